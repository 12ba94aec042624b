"""FeatureSpec: what a model sees of a hole, stored in every model folder's manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.errors import ValidationError

# 2: step-change marker on the first advancing sample of a step;
# 3: plus the rule-based reading of the hole (RULE_CHANNELS, RULE_SCALARS)
FEATURE_VERSION = 3
# Versions this code still computes, so models trained before an upgrade keep serving.
SUPPORTED_VERSIONS = (1, 2, 3)

CHANNELS: tuple[str, ...] = (
    "torque",  # net torque / per-hole robust scale
    "thrust",  # net thrust / per-hole robust scale
    "dtorque",  # slope of the 0.2 mm smoothed torque, per mm, same scale as torque
    "step_change",  # 1 on the cell of the first advancing sample of a new program step
    "speed",  # spindle speed in krpm, or the no-load torque current (A) as a proxy
    "valid",  # 1 where the hole has samples, 0 on padding
)

# The rule-based estimator's reading, as evidence the model may weigh: a bump of width
# RULE_BUMP_MM at each point it places (zero when it finds the point absent). The model
# learns where that reading is right; what the rules get wrong on unusual stacks it overrides.
RULE_CHANNELS: tuple[str, ...] = ("rule_entry", "rule_transition", "rule_exit")

SCALARS: tuple[str, ...] = (
    "local_counter",  # log1p(tool local counter) / 5, 0 when unknown
    "local_counter_known",
    "predrilled",
    "predrilled_known",
    "log_torque_scale",  # log10 of the torque scale (A): keeps absolute level after scaling
    "log_thrust_scale",
    "speed_is_rpm",  # 1: speed channel is rpm; 0: it is the no-load current proxy (or absent)
    "start_torque",  # scaled torque over the first 0.5 mm of the hole: starts inside the stack?
    "end_torque",  # scaled torque over the last 0.5 mm: still in the stack (aborted, blind)?
)

RULE_SCALARS: tuple[str, ...] = ("rule_entry_present", "rule_transition_present",
                                 "rule_exit_present")


def channels_of(version: int) -> tuple[str, ...]:
    return CHANNELS + RULE_CHANNELS if version >= 3 else CHANNELS


def scalars_of(version: int) -> tuple[str, ...]:
    return SCALARS + RULE_SCALARS if version >= 3 else SCALARS


@dataclass(frozen=True)
class FeatureSpec:
    """A uniform depth grid of `length` cells of `grid_mm`, starting at a fixed depth.

    start_rule "fixed": grid position 0 is at `start_mm` for every hole, so one forward pass
    covers depths start_mm .. start_mm + length * grid_mm (the real logs reach 52.5 mm).
    """

    grid_mm: float = 0.05
    length: int = 1088
    start_rule: str = "fixed"
    start_mm: float = 0.0
    smooth_mm: float = 0.2
    channels: tuple[str, ...] = channels_of(FEATURE_VERSION)
    scalars: tuple[str, ...] = scalars_of(FEATURE_VERSION)
    version: int = FEATURE_VERSION
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.grid_mm <= 0.05:
            raise ValidationError(f"FeatureSpec.grid_mm must be in (0, 0.05], got {self.grid_mm}")
        if self.length < 16:
            raise ValidationError(f"FeatureSpec.length must be >= 16, got {self.length}")
        if self.start_rule != "fixed":
            raise ValidationError(f"FeatureSpec.start_rule {self.start_rule!r} is unknown "
                                  "(only 'fixed' is implemented)")
        if self.version not in SUPPORTED_VERSIONS:
            raise ValidationError(f"FeatureSpec version {self.version} is not supported "
                                  f"(this code computes versions {list(SUPPORTED_VERSIONS)})")
        if (tuple(self.channels) != channels_of(self.version)
                or tuple(self.scalars) != scalars_of(self.version)):
            raise ValidationError(
                f"FeatureSpec channels/scalars {list(self.channels)}/{list(self.scalars)} do not "
                f"match feature version {self.version}")

    @classmethod
    def of_version(cls, version: int, **kw: Any) -> FeatureSpec:
        """A spec of an older (or the current) feature version, with its channel lists."""
        return cls(channels=channels_of(version), scalars=scalars_of(version),
                   version=version, **kw)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_scalars(self) -> int:
        return len(self.scalars)

    @property
    def end_mm(self) -> float:
        return self.start_mm + self.length * self.grid_mm

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["scalars"] = list(self.scalars)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValidationError(f"FeatureSpec: unknown keys {unknown}")
        for k in ("channels", "scalars"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)
