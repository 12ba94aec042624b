"""Trace -> model input on a uniform depth grid, and model output -> depths (numpy only).

Public interface (the serving engine and the training code both use exactly these):
FeatureSpec, FeatureBatch, make_batch, decode, DecodedPoints, points_array,
target_positions, refine_positions, advancing_mask.
"""

from appliance.features.batch import FeatureBatch, hole_features, make_batch
from appliance.features.decode import (
    DecodedPoints,
    decode,
    points_array,
    refine_positions,
    target_positions,
)
from appliance.features.spec import CHANNELS, SCALARS, FeatureSpec
from appliance.trace import advancing_mask

__all__ = [
    "CHANNELS", "SCALARS", "DecodedPoints", "FeatureBatch", "FeatureSpec", "advancing_mask",
    "decode", "hole_features", "make_batch", "points_array", "refine_positions",
    "target_positions",
]
