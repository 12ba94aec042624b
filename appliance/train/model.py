"""The depth-point models: a backbone (PatchTSMixer or a small 1D CNN) and one shared head.

Both map x [B, C, L] and scalars [B, S] to scores [B, 3, L] (per-position logits for
entry, transition, exit), presence [B, 3] (logits) and offset [B, 3, L]: per position, how
far (mm) the point sits from the half-height crossing of a ramp there. The scores pick the
ramp, the convention gives its crossing, the offset is the rig's own placement on top
(0 for the convention). The backbone yields per-position features; the head adds a local
convolution of the raw input (sub-patch precision) and the per-hole scalars.
`model.backbone` is what a fine-tune freezes first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PatchTSMixerConfig, PatchTSMixerModel

from appliance.features.spec import FEATURE_VERSION, channels_of, scalars_of

ARCHITECTURES = ("patchtsmixer", "cnn")


@dataclass
class ModelConfig:
    in_channels: int = len(channels_of(FEATURE_VERSION))
    n_scalars: int = len(scalars_of(FEATURE_VERSION))
    length: int = 1088
    hidden: int = 16  # per-position feature width fed to the head
    # PatchTSMixer: a short convolutional stem gives sub-patch precision, the mixer the
    # whole-hole context (which ramp is which); their features are summed per position.
    # Sized for the daemon: 5 members cost ~4 ms of onnxruntime per hole on one core.
    # Smaller mixers cost less but fine-tune less reliably (the baseline card's table).
    stem_dilations: tuple[int, ...] = (1, 2, 4)
    mixer_on_stem: bool = False  # the mixer reads the stem's features (slower, no better)
    patch_length: int = 32
    d_model: int = 16
    num_layers: int = 2
    expansion_factor: int = 2
    dropout: float = 0.1
    # CNN
    cnn_dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    cnn_kernel: int = 5

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cnn_dilations"] = list(self.cnn_dilations)
        d["stem_dilations"] = list(self.stem_dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "cnn_kernel" in d and "stem_dilations" not in d:  # saved before the stem existed
            d["stem_dilations"], d["mixer_on_stem"] = (), False
        for k in ("cnn_dilations", "stem_dilations"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class LayerScale(nn.Module):
    """A learnt per-channel gain on a residual branch, started small. It stands in for a
    normalisation layer: dividing by a small learnt spread amplified float32 rounding so much
    that onnxruntime and torch differed by ~2e-4 on trained weights (the gates allow 1e-4)."""

    def __init__(self, channels: int, init: float = 0.1) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain[None, :, None]


class ConvStack(nn.Module):
    """Residual dilated 1D convolutions, length preserving."""

    def __init__(self, in_channels: int, hidden: int, kernel: int,
                 dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Conv1d(in_channels, hidden, kernel, padding=kernel // 2)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Conv1d(hidden, hidden, kernel,
                                               padding=d * (kernel // 2), dilation=d),
                          LayerScale(hidden))
            for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return h


class PatchTSMixerBackbone(nn.Module):
    """A convolutional stem (receptive field ~ +-3 mm) for where exactly a ramp is, then
    PatchTSMixer over non-overlapping patches for which ramp it is; each patch embedding is
    unfolded back into patch_length per-position vectors and added to the stem's."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.length % cfg.patch_length:
            raise ValueError(f"length {cfg.length} must be a multiple of patch_length "
                             f"{cfg.patch_length}")
        self.cfg = cfg
        # models from before the stem have no stem_dilations in their config: none then
        self.stem = (ConvStack(cfg.in_channels, cfg.hidden, cfg.cnn_kernel, cfg.stem_dilations)
                     if cfg.stem_dilations else None)
        mixer_channels = cfg.hidden if cfg.mixer_on_stem else cfg.in_channels
        self.mixer = PatchTSMixerModel(PatchTSMixerConfig(
            context_length=cfg.length,
            patch_length=cfg.patch_length,
            patch_stride=cfg.patch_length,
            num_input_channels=mixer_channels,
            d_model=cfg.d_model,
            num_layers=cfg.num_layers,
            expansion_factor=cfg.expansion_factor,
            dropout=cfg.dropout,
            mode="mix_channel",
            gated_attn=True,
            scaling=None,  # features are already normalised per hole
        ))
        self.unpatch = nn.Linear(mixer_channels * cfg.d_model, cfg.patch_length * cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        local = self.stem(x) if self.stem is not None else None
        src = local if local is not None and self.cfg.mixer_on_stem else x
        h = self.mixer(past_values=src.transpose(1, 2)).last_hidden_state  # [B, C, P, D]
        p = h.shape[2]
        h = h.permute(0, 2, 1, 3).reshape(b, p, -1)  # [B, P, C*D]
        h = self.unpatch(h).reshape(b, p * self.cfg.patch_length, self.cfg.hidden)
        h = h.transpose(1, 2)  # [B, H, L]
        return h if local is None else local + h


class CNNBackbone(ConvStack):
    """Residual dilated 1D convolutions; the receptive field spans ~ +-13 mm at 0.05 mm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg.in_channels, cfg.hidden, cfg.cnn_kernel, cfg.cnn_dilations)


def placement_branch(hidden: int) -> nn.Sequential:
    """Offsets in mm from the crossing, per position. Dilated so that it sees where a ramp
    starts and ends (~ +-0.6 mm more than the features): a practice such as "the exit where
    the fall ends" depends on the ramp's length. Its last layer starts at zero, so a new
    branch (or one added to a parent from before it) places every point on the convention."""
    last = nn.Conv1d(hidden, 3, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.GELU(), nn.Conv1d(hidden, hidden, 5, padding=4, dilation=2),
                         nn.GELU(), nn.Conv1d(hidden, hidden, 5, padding=8, dilation=4),
                         nn.GELU(), last)


PLACEMENT_PREFIX = "head.place."  # weights a parent from before learnt placement lacks


def shift_placement(model: nn.Module, by_mm: list[float]) -> None:
    """Add a constant per point to the placement branch's output (its last bias)."""
    last = model.head.place[-1]
    with torch.no_grad():
        last.bias += torch.as_tensor(by_mm, dtype=last.bias.dtype)


class PointHead(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.local = nn.Conv1d(cfg.in_channels, h, 5, padding=2)
        self.scalar_embed = nn.Linear(cfg.n_scalars, h)
        self.refine = nn.Sequential(nn.GELU(), nn.Conv1d(h, h, 5, padding=2), nn.GELU(),
                                    nn.Conv1d(h, 3, 1))
        self.presence = nn.Sequential(nn.Linear(3 * h, h), nn.GELU(), nn.Linear(h, 3))
        self.place = placement_branch(h)

    def forward(self, feats: torch.Tensor, x: torch.Tensor, scalars: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.scalar_embed(scalars)  # [B, H]
        # maps are [B, H, L] here and [B, H, 1, L] as exported (appliance.train.served_form)
        h = feats + self.local(x) + s.reshape(*s.shape, *(1,) * (feats.dim() - 2))
        scores = self.refine(h)
        flat = feats.flatten(2)
        pooled = torch.cat([flat.mean(dim=2), flat.amax(dim=2), s], dim=1)
        # detached: the rig's placement is learnt on the features that find the ramps, and
        # never pulls them away from finding the ramps
        return scores, self.presence(pooled), self.place(h.detach())


class DepthPointModel(nn.Module):
    def __init__(self, arch: str, cfg: ModelConfig) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
        self.arch = arch
        self.cfg = cfg
        self.backbone = PatchTSMixerBackbone(cfg) if arch == "patchtsmixer" else CNNBackbone(cfg)
        self.head = PointHead(cfg)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, presence, offset = self.head(self.backbone(x), x, scalars)
        return scores, presence, offset

    def load_parent_state(self, state: dict[str, torch.Tensor]) -> None:
        """A parent's weights; a parent from before learnt placement keeps this model's
        zero-initialised placement branch (it then places on the convention, as it did)."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        absent = [k for k in missing if not k.startswith(PLACEMENT_PREFIX)]
        if absent or unexpected:
            raise ValueError(f"parent weights do not fit this model: missing {absent[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")


def build_model(arch: str, config: ModelConfig | dict[str, Any]) -> DepthPointModel:
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    return DepthPointModel(arch, cfg)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, scalars: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, presence logits, offset) of one member on a feature batch."""
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + 128]), torch.from_numpy(scalars[i:i + 128]))
            for i in range(0, len(x), 128)]
    return tuple(torch.cat([o[j] for o in outs]).numpy() for j in range(3))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
