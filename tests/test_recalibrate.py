"""Refitting a folder's review priority from its own members, without training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from appliance.engine import Engine, sha256_file  # noqa: E402
from appliance.errors import UsageError  # noqa: E402
from appliance.features import FeatureSpec  # noqa: E402
from appliance.synth import generate  # noqa: E402
from appliance.train.data import TrainHole  # noqa: E402
from appliance.train.model import ModelConfig  # noqa: E402
from appliance.train.recalibrate import recalibrate  # noqa: E402
from appliance.train.train import TrainOptions, train_ensemble  # noqa: E402

SPEC = FeatureSpec(length=512)


def _holes() -> list[TrainHole]:
    return [TrainHole(h.trace, h.truth, f"g-{i}", f"h-{i}") for i, h in enumerate(generate(16, 4))]


def _opts(**kw: object) -> TrainOptions:
    base: dict[str, object] = dict(arch="cnn", folds=2, epochs=1, batch_size=8, seed=1,
                                   probe_size=4, augment=1, model=ModelConfig(), spec=SPEC)
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("recal") / "cand"
    train_ensemble(_holes(), out, _opts(version="tiny-1"))
    return out


def test_a_refit_on_the_same_features_reproduces_the_calibration(folder: Path) -> None:
    before = json.loads((folder / "manifest.json").read_text())
    weights = {rel: sha256_file(folder / rel) for rel in before["weights"] + before["members"]}
    review = recalibrate(folder, _holes(), _opts())
    # the members were resumed as the run's own folds: the out-of-fold answers, and so the
    # fit on them, are those of training
    old = before["review"]
    assert review["n"] == old["n"] and review["n_wrong"] == old["n_wrong"]
    assert review["coef"] == pytest.approx(old["coef"], abs=1e-9)
    assert review["intercept"] == pytest.approx(old["intercept"], abs=1e-9)
    assert review["refit"]["dataset_hash"] == before["dataset_hash"]
    after = json.loads((folder / "manifest.json").read_text())
    assert after["review"] == review
    assert {rel: sha256_file(folder / rel) for rel in weights} == weights  # nothing trained
    card = (folder / "README.md").read_text()
    assert "Refitted on" in card and after["files"]["README.md"] == sha256_file(
        folder / "README.md")
    Engine.from_dir(folder)  # still sealed: the integrity check passes


def test_a_refit_with_another_recipe_is_refused_and_touches_nothing(folder: Path) -> None:
    manifest = (folder / "manifest.json").read_bytes()
    with pytest.raises(UsageError, match="seed"):
        recalibrate(folder, _holes(), _opts(seed=2))
    assert (folder / "manifest.json").read_bytes() == manifest
