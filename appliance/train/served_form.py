"""The model as exported: the same function as model.py's, written in layouts onnxruntime
runs fast.

transformers' PatchTSMixer mixes channels and patches by moving the mixed axis last, so its
graph is full of 4-D transposes and of softmaxes and GELUs over axes of 9 or 34 elements.
In onnxruntime on one core those small-axis operations cost ~10 ns per element against
~1 ns for the same work on a long contiguous axis, and the mixer took over half of a member's
time on a [16, 1088] feature map it barely touches. Here the mixed axis stays where it is
and the weights multiply from the left, so every operation runs over long contiguous rows.
Smaller changes: layer scales folded into their convolutions, and convolutions run as 2-D
ones of height 1 on feature maps kept 4-D from input to output, which onnxruntime executes in
its blocked layout without reordering around each one. Measured on the baseline
(benchmarks/export_form.py): a member costs ~0.7 of the training module's export.

Training keeps transformers' module (its weights are what this form reads); the export's
parity check compares this form's graph with the training module itself, so a mismatch
fails the export rather than reaching a rig.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PatchTSMixerModel

from appliance.train.model import DepthPointModel, LayerScale, PatchTSMixerBackbone


def _left(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`linear` applied along the second-to-last axis of x: weight @ x, a bias per row."""
    return torch.matmul(linear.weight, x) + linear.bias[:, None]


class _Layer(nn.Module):
    """One PatchTSMixerLayer (mix_channel, gated attention, LayerNorm) on [B, C, P, D]."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.channel = layer.channel_feature_mixer
        self.patch = layer.patch_mixer
        self.feature = layer.feature_mixer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c, p, d = h.shape
        # channels: gate then MLP over C, on [B, C, P*D]
        blk = self.channel
        n = blk.norm.norm(h).reshape(b, c, p * d)
        n = n * F.softmax(_left(blk.gating_block.attn_layer, n), dim=1)
        n = _left(blk.mlp.fc2, F.gelu(_left(blk.mlp.fc1, n)))
        h = h + n.reshape(b, c, p, d)
        # patches: MLP then gate over P, on [B, C, P, D]
        blk = self.patch
        n = blk.norm.norm(h)
        n = _left(blk.mlp.fc2, F.gelu(_left(blk.mlp.fc1, n)))
        n = n * F.softmax(_left(blk.gating_block.attn_layer, n), dim=2)
        h = h + n
        # features: MLP then gate over D, the last axis already
        blk = self.feature
        n = blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm.norm(h))))
        n = n * F.softmax(blk.gating_block.attn_layer(n), dim=-1)
        return h + n


def supported(mixer: PatchTSMixerModel) -> bool:
    """Whether the configuration is the one this form reproduces (else the export keeps
    transformers' module as it is)."""
    cfg = mixer.config
    return (cfg.mode == "mix_channel" and cfg.gated_attn and not cfg.self_attn
            and "batch" not in cfg.norm_mlp.lower() and not cfg.use_positional_encoding
            and cfg.scaling in (None, False) and cfg.patch_stride == cfg.patch_length
            and cfg.context_length % cfg.patch_length == 0 and mixer.masking is None)


class ServedBackbone(nn.Module):
    """PatchTSMixerBackbone's function: stem features plus the mixer's, unpatched, as a
    [B, H, 1, L] map. The mixer runs in the form above when its configuration is one that form
    covers (`supported`), else as transformers' module."""

    def __init__(self, backbone: PatchTSMixerBackbone) -> None:
        super().__init__()
        self.cfg = cfg = backbone.cfg
        self.stem = backbone.stem
        mixer = backbone.mixer
        served = supported(mixer)
        self.mixer: PatchTSMixerModel | None = None if served else mixer
        self.patcher = mixer.encoder.patcher
        self.layers = nn.ModuleList(
            _Layer(m) for m in (mixer.encoder.mlp_mixer_encoder.mixers if served else ()))
        # unpatch rows reordered from (position in patch, hidden) to (hidden, position), so
        # its output reshapes to [B, H, P, patch] and one block transpose gives [B, H, L]
        unpatch = backbone.unpatch
        w = unpatch.weight.reshape(cfg.patch_length, cfg.hidden, -1).transpose(0, 1)
        bias = unpatch.bias.reshape(cfg.patch_length, cfg.hidden).transpose(0, 1)
        self.unpatch_w = nn.Parameter(w.reshape(cfg.patch_length * cfg.hidden, -1).clone())
        self.unpatch_b = nn.Parameter(bias.reshape(-1).clone())

    def forward(self, x4: torch.Tensor) -> torch.Tensor:
        x = x4.squeeze(2)  # the mixer's view; onnxruntime aliases a Squeeze, copies nothing
        b, length = x.shape[0], x.shape[2]
        cfg = self.cfg
        local = self.stem(x4) if self.stem is not None else None
        src = local.squeeze(2) if local is not None and cfg.mixer_on_stem else x
        c = src.shape[1]
        p = length // cfg.patch_length
        if self.mixer is None:
            h = self.patcher(src.reshape(b, c, p, cfg.patch_length))  # [B, C, P, D]
            for layer in self.layers:
                h = layer(h)
        else:
            h = self.mixer(past_values=src.transpose(1, 2)).last_hidden_state
        h = h.permute(0, 2, 1, 3).reshape(b, p, -1)  # [B, P, C*D]
        h = F.linear(h, self.unpatch_w, self.unpatch_b)  # [B, P, H*patch]
        h = h.reshape(b, p, cfg.hidden, cfg.patch_length).transpose(1, 2)
        h = h.reshape(b, cfg.hidden, 1, length)
        return h if local is None else local + h


def conv_as_2d(conv: nn.Conv1d) -> nn.Conv2d:
    """The same convolution over [B, C, 1, L]: onnxruntime's blocked-layout (NCHWc) kernels
    take 2-D convolutions only, and halve the time of the [16, 1088] feature convolutions."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                    padding=(0, int(conv.padding[0])), dilation=(1, conv.dilation[0]),
                    groups=conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(conv.weight[:, :, None, :])
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def convs_as_2d(module: nn.Module) -> None:
    """Every Conv1d in `module` becomes its conv_as_2d: the module then runs on [B, C, 1, L]."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv1d) and child.padding_mode == "zeros":
            setattr(module, name, conv_as_2d(child))
        else:
            convs_as_2d(child)


class ServedModel(nn.Module):
    """DepthPointModel's function with every feature map kept 4-D ([B, C, 1, L]) from the
    input to the outputs. Between two convolutions onnxruntime then keeps the map in its
    blocked layout (a GELU runs on it as it is) and adds a residual inside the convolution,
    where a 3-D map cost a reorder in and out of that layout around every convolution:
    ~0.95 of a member's time (benchmarks/export_form.py)."""

    def __init__(self, model: DepthPointModel) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, x: torch.Tensor, scalars: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x4 = x.unsqueeze(2)
        scores, presence, offset = self.head(self.backbone(x4), x4, scalars)
        return scores.squeeze(2), presence, offset.squeeze(2)


def fold_layer_scales(module: nn.Module) -> None:
    """(conv, LayerScale) pairs become one convolution with the gain in its weights: one
    pass over the [16, 1088] map less per block."""
    for child in module.children():
        if isinstance(child, nn.Sequential):
            parts = list(child)
            for i in range(1, len(parts)):
                conv, scale = parts[i - 1], parts[i]
                if isinstance(conv, nn.Conv1d) and isinstance(scale, LayerScale):
                    with torch.no_grad():
                        conv.weight.mul_(scale.gain[:, None, None])
                        if conv.bias is not None:
                            conv.bias.mul_(scale.gain)
                    child[i] = nn.Identity()
        fold_layer_scales(child)


def served_form(model: nn.Module) -> nn.Module:
    """A copy of `model` as it is exported: the PatchTSMixer backbone in the form above
    (its mixer too when its configuration is one this form covers), layer scales folded into
    their convolutions, feature maps 4-D and convolutions 2-D. Same outputs to float rounding
    (~1e-5); the export's parity check holds the graph to the original model."""
    model = copy.deepcopy(model).eval()
    if not isinstance(model, DepthPointModel):
        return model  # a module of another shape is exported as it is
    if isinstance(model.backbone, PatchTSMixerBackbone):
        model.backbone = ServedBackbone(model.backbone)
    fold_layer_scales(model)
    convs_as_2d(model)
    return ServedModel(model).eval()
