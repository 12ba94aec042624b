"""The served form (appliance.train.served_form): the exported graph computes what the trained
model computes, for every backbone and option, and an existing folder re-exports in place."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from transformers import PatchTSMixerConfig, PatchTSMixerModel  # noqa: E402

from appliance.engine import Engine, read_manifest, verify_files  # noqa: E402
from appliance.features import FeatureSpec  # noqa: E402
from appliance.synth import generate  # noqa: E402
from appliance.train.data import TrainHole  # noqa: E402
from appliance.train.export import (  # noqa: E402
    check_parity,
    export_onnx,
    reexport_members,
    session,
)
from appliance.train.model import ModelConfig, build_model  # noqa: E402
from appliance.train.served_form import ServedBackbone, served_form, supported  # noqa: E402
from appliance.train.train import TrainOptions, train_ensemble  # noqa: E402

SPEC = FeatureSpec(length=256)


def perturbed(arch: str, **cfg) -> torch.nn.Module:
    """A model whose every weight is away from its initial value: a zero-initialised branch
    or a layer scale of 0.1 could hide a term the served form drops."""
    torch.manual_seed(3)
    model = build_model(arch, ModelConfig(length=SPEC.length, **cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-3, 3, SPEC.length, dtype=np.float32)
    x = (rng.standard_normal((batch, SPEC.n_channels, SPEC.length)) * 3 + ramp)
    s = rng.standard_normal((batch, SPEC.n_scalars)) * 2
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(s.astype(np.float32))


@pytest.mark.parametrize("arch,cfg", [
    ("patchtsmixer", {}),
    ("patchtsmixer", {"mixer_on_stem": True}),
    ("patchtsmixer", {"stem_dilations": ()}),
    ("patchtsmixer", {"num_layers": 3, "d_model": 8, "patch_length": 16}),
    ("cnn", {}),
])
def test_served_form_computes_what_the_model_computes(arch, cfg):
    model = perturbed(arch, **cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    served = served_form(model)
    if arch == "patchtsmixer":
        assert isinstance(served.backbone, ServedBackbone) and served.backbone.mixer is None
    x, s = inputs(5, 1)
    with torch.no_grad():
        want, got = model(x, s), served(x, s)
    for w, g in zip(want, got, strict=True):
        assert w.shape == g.shape
        assert float((w - g).abs().max()) <= 2e-5 * max(1.0, float(w.abs().max()))
    # a copy: the model a fine-tune goes on training is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_mixer_configuration_it_does_not_cover_is_exported_as_it_is():
    mixer = PatchTSMixerModel(PatchTSMixerConfig(
        context_length=64, patch_length=8, patch_stride=8, num_input_channels=3, d_model=8,
        num_layers=1, mode="mix_channel", gated_attn=True, self_attn=True, scaling=None))
    assert not supported(mixer)
    model = perturbed("patchtsmixer")
    model.backbone.mixer.config.self_attn = True  # as a future option would set it
    served = served_form(model)
    assert served.backbone.mixer is not None  # transformers' module, run as it is
    x, s = inputs(3, 4)
    with torch.no_grad():
        want, got = model(x, s), served(x, s)
    for w, g in zip(want, got, strict=True):
        assert float((w - g).abs().max()) <= 2e-5 * max(1.0, float(w.abs().max()))


@pytest.mark.parametrize("offset", [True, False])
def test_the_exported_graph_matches_the_trained_model(tmp_path, offset):
    model = perturbed("patchtsmixer")
    ex_x, ex_s = inputs(2, 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, ex_x.numpy(), ex_s.numpy(), offset=offset)
    x, s = inputs(7, 3)
    assert check_parity(model, path, x.numpy(), s.numpy()) <= 1e-4
    names = [o.name for o in session(path).get_outputs()]
    assert names == (["scores", "presence", "offset"] if offset else ["scores", "presence"])
    # the transposes and small-axis softmaxes of the training module are gone from the graph
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Transpose") <= 2
    assert "Conv" in ops


def test_an_existing_folder_reexports_in_place(tmp_path):
    torch.set_num_threads(1)
    holes = [TrainHole(h.trace, h.truth, f"g{i}", f"h{i}") for i, h in enumerate(generate(8, 4))]
    out = tmp_path / "cand"
    opts = TrainOptions(arch="patchtsmixer", folds=2, epochs=1, batch_size=8, seed=1,
                        probe_size=4, model=ModelConfig(length=512),
                        spec=FeatureSpec(length=512), version="re-v1")
    train_ensemble(holes, out, opts)
    before = json.loads((out / "manifest.json").read_text())
    engine = Engine.from_dir(out)
    traces = [h.trace for h in generate(3, 9)]
    answers = engine.estimate_many(traces)

    parity = reexport_members(out)

    after = json.loads((out / "manifest.json").read_text())
    assert parity <= 1e-4 and after["metrics"]["export_parity_max_abs"] == parity
    assert after["version"] == before["version"] and after["weights"] == before["weights"]
    assert verify_files(read_manifest(out)) == []
    assert f"{parity:.8f}" in (out / "README.md").read_text()
    again = Engine.from_dir(out).estimate_many(traces)
    for a, b in zip(answers, again, strict=True):
        for name in ("entry_mm", "transition_mm", "exit_mm"):
            u, v = getattr(a.points, name), getattr(b.points, name)
            assert (u is None) == (v is None)
            assert u is None or abs(u - v) <= 1e-3
    assert not list(out.glob(".members.tmp-*"))
