"""Watching the rig: drift detection per drill (torch-free, serving side).

- signals.py: hole_signals(trace, estimate) -> HoleSignals, what each new hole shows (plateau
  levels per program step from levels.py, presence pattern, layer thicknesses, spread,
  review priority); residual_signals(label, estimate) -> Residuals once a hole is confirmed;
  drill_of(trace), the drill a hole belongs to ("unknown" without a serial).
- drift.py: DriftMonitor (observe, observe_residuals, reset, drill, drills) with DriftConfig,
  returning DrillDrift records (appliance.records) with a DriftSignal per channel.
"""

from appliance.monitor.drift import (
    CHANNELS,
    DriftConfig,
    DriftMonitor,
)
from appliance.monitor.levels import StepLevel
from appliance.monitor.signals import (
    UNKNOWN_DRILL,
    HoleSignals,
    Residuals,
    drill_of,
    hole_signals,
    residual_signals,
)
from appliance.records import DriftSignal, DriftState, DrillDrift

__all__ = [
    "CHANNELS", "UNKNOWN_DRILL", "DriftConfig", "DriftMonitor", "DriftSignal", "DriftState",
    "DrillDrift", "HoleSignals", "Residuals", "StepLevel", "drill_of", "hole_signals",
    "residual_signals",
]
