"""FeatureSpec: what a model sees of a hole, stored in every model folder's manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from appliance.errors import ValidationError

FEATURE_VERSION = 1

CHANNELS: tuple[str, ...] = (
    "torque",  # net torque / per-hole robust scale
    "thrust",  # net thrust / per-hole robust scale
    "dtorque",  # slope of the 0.2 mm smoothed torque, per mm, same scale as torque
    "step_change",  # 1 on the grid cell where the program step number changes
    "speed",  # spindle speed in krpm, or the no-load torque current (A) as a proxy
    "valid",  # 1 where the hole has samples, 0 on padding
)

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
    channels: tuple[str, ...] = CHANNELS
    scalars: tuple[str, ...] = SCALARS
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
        if tuple(self.channels) != CHANNELS or tuple(self.scalars) != SCALARS:
            raise ValidationError(
                f"FeatureSpec channels/scalars {list(self.channels)}/{list(self.scalars)} do not "
                f"match this code's feature version {FEATURE_VERSION}")
        if self.version != FEATURE_VERSION:
            raise ValidationError(f"FeatureSpec version {self.version} is not supported "
                                  f"(this code computes version {FEATURE_VERSION})")

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def n_scalars(self) -> int:
        return len(self.scalars)

    @property
    def end_mm(self) -> float:
        return self.start_mm + self.length * self.grid_mm

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["scalars"] = list(self.scalars)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValidationError(f"FeatureSpec: unknown keys {unknown}")
        for k in ("channels", "scalars"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)
