"""ONNX export: parity on other batch sizes and values, metadata stripped, errors caught."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnx  # noqa: E402

from appliance.features import FeatureSpec  # noqa: E402
from appliance.train.export import (  # noqa: E402
    ExportError,
    check_parity,
    export_onnx,
    session,
)
from appliance.train.model import ModelConfig, build_model  # noqa: E402

SPEC = FeatureSpec(length=256)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("patchtsmixer", ModelConfig(length=SPEC.length)).eval()
    # Non-trivial weights: a freshly initialised head can hide patch-order mistakes.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rng = np.random.default_rng(0)
    ex_x = rng.standard_normal((2, SPEC.n_channels, SPEC.length)).astype(np.float32)
    ex_s = rng.standard_normal((2, SPEC.n_scalars)).astype(np.float32)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_onnx(model, path, ex_x, ex_s)
    return model, path


def test_patchtsmixer_parity_on_another_batch_size_and_values(exported):
    model, path = exported
    rng = np.random.default_rng(42)
    for batch in (1, 7):
        # Values unlike the export example: a constant per patch position and a ramp, so a
        # graph that reorders or mixes patches gives visibly different scores.
        ramp = np.linspace(-3, 3, SPEC.length, dtype=np.float32)
        x = (rng.standard_normal((batch, SPEC.n_channels, SPEC.length)) * 4
             + ramp).astype(np.float32)
        s = (rng.standard_normal((batch, SPEC.n_scalars)) * 2).astype(np.float32)
        got = session(path).run(None, {"x": x, "scalars": s})
        with torch.no_grad():
            want = model(torch.from_numpy(x), torch.from_numpy(s))
        assert got[0].shape == (batch, 3, SPEC.length) and got[1].shape == (batch, 3)
        for g, w in zip(got, want, strict=True):
            assert np.max(np.abs(g - w.numpy())) <= 1e-4
        assert check_parity(model, path, x, s) <= 1e-4


def test_parity_check_catches_a_graph_that_differs_from_torch(exported):
    model, path = exported
    changed = build_model("patchtsmixer", ModelConfig(length=SPEC.length)).eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        # Swap two patches' worth of the unpatching weights: what a patch-order bug does.
        w = changed.backbone.unpatch.weight
        w.copy_(torch.roll(w, shifts=1, dims=0))
    x = np.random.default_rng(1).standard_normal((3, SPEC.n_channels, SPEC.length)
                                                 ).astype(np.float32)
    s = np.zeros((3, SPEC.n_scalars), np.float32)
    with pytest.raises(ExportError, match="differs from torch"):
        check_parity(changed, path, x, s)


def test_debug_metadata_is_stripped(exported):
    _, path = exported
    proto = onnx.load(str(path))
    assert proto.doc_string == "" and proto.graph.doc_string == ""
    assert all(n.doc_string == "" and len(n.metadata_props) == 0 for n in proto.graph.node)
    assert len(proto.metadata_props) == 0
    assert not any(b"stack_trace" in n.SerializeToString() for n in proto.graph.node)
    names = {i.name: i for i in proto.graph.input}
    assert list(names) == ["x", "scalars"]
    assert names["x"].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert [o.name for o in proto.graph.output] == ["scores", "presence", "offset"]
