"""The ONNX export says nothing when it works and everything when it fails."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from appliance.features import FeatureSpec  # noqa: E402
from appliance.train.export import EXPORTER_LOGGERS, export_onnx  # noqa: E402
from appliance.train.model import ModelConfig, build_model  # noqa: E402

SPEC = FeatureSpec(length=256)


def examples(batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, SPEC.n_channels, SPEC.length)).astype(np.float32),
            rng.standard_normal((batch, SPEC.n_scalars)).astype(np.float32))


class Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        raise ValueError("member 3 has no head")


def test_a_working_export_prints_nothing(capfd: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", ModelConfig(length=SPEC.length)).eval()
    levels = [logging.getLogger(n).level for n in EXPORTER_LOGGERS]
    capfd.readouterr()
    # pytest keeps warnings and log records off the terminal itself: record them here
    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        filters = list(warnings.filters)
        for i in range(2):  # not only the first export in a process: each one is quiet
            export_onnx(model, tmp_path / f"m{i}.onnx", *examples())
        assert list(warnings.filters) == filters
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out + err)[-2000:]
    assert [str(w.message) for w in seen] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert (tmp_path / "m1.onnx").stat().st_size > 0
    # the silence was scoped to the export: the loggers are as they were
    assert [logging.getLogger(n).level for n in EXPORTER_LOGGERS] == levels


def test_a_failing_export_raises_with_its_message(capfd: pytest.CaptureFixture[str],
                                                   tmp_path) -> None:
    with pytest.raises(Exception, match="member 3 has no head"):
        export_onnx(Broken(), tmp_path / "m.onnx", *examples())
    assert not (tmp_path / "m.onnx").exists()
    capfd.readouterr()  # what the exporter said is shown as the failure's context
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.warn("after the export", UserWarning, stacklevel=1)
    assert len(seen) == 1  # warnings work again once the export is over
