"""Synthetic Setitec-like traces with exact truth (torch-free).

Public interface: StackSpec, Layer, random_spec(rng), synthesize(spec) -> SynthHole
(trace, truth, spec, noiseless_torque), generate(n, seed) -> list[SynthHole];
appliance.synth.files.write_dataset(holes, out_dir, variant) writes Setitec files +
labels.csv. Truth follows ../shared/docs/depth-points.md, read off the noiseless torque.
"""

from appliance.synth.generator import SynthHole, generate, synthesize
from appliance.synth.spec import Layer, StackSpec, random_spec

__all__ = ["Layer", "StackSpec", "SynthHole", "generate", "random_spec", "synthesize"]
