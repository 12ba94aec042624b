"""Training: tiny end-to-end runs, fine-tune lineage, grouped folds, loss, resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

import appliance.features as features  # noqa: E402
from appliance.engine import sha256_file  # noqa: E402
from appliance.engine.review import DEFAULT as REVIEW_DEFAULT  # noqa: E402
from appliance.engine.review import FEATURES as REVIEW_FEATURES  # noqa: E402
from appliance.errors import ValidationError  # noqa: E402
from appliance.estimators.heuristic import read_trace  # noqa: E402
from appliance.estimators.placement import anchor_labels  # noqa: E402
from appliance.features import FeatureSpec, decode, make_batch, points_array  # noqa: E402
from appliance.synth import generate  # noqa: E402
from appliance.train import train as train_mod  # noqa: E402
from appliance.train.card import model_card, refresh_card  # noqa: E402
from appliance.train.data import TrainHole, dataset_hash  # noqa: E402
from appliance.train.export import read_manifest, session  # noqa: E402
from appliance.train.model import ModelConfig  # noqa: E402
from appliance.train.progress import Progress  # noqa: E402
from appliance.train.train import (  # noqa: E402
    TrainOptions,
    assign_folds,
    point_loss,
    train_ensemble,
)

REPO = Path(__file__).resolve().parent.parent
SPEC = FeatureSpec(length=512)  # 25.6 mm: deeper points only train presence; keeps tests tiny


def holes(n: int, seed: int) -> list[TrainHole]:
    return [TrainHole(h.trace, h.truth, f"g{seed}-{i}", f"h{seed}-{i}")
            for i, h in enumerate(generate(n, seed))]


def opts(arch: str, **kw) -> TrainOptions:
    base = dict(arch=arch, folds=2, epochs=1, batch_size=8, seed=1, probe_size=4,
                model=ModelConfig(), spec=SPEC)
    base.update(kw)
    return TrainOptions(**base)


class Events:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, s: str) -> None:
        self.lines.append(s)

    def flush(self) -> None:
        pass

    def events(self) -> list[dict]:
        return [json.loads(x) for x in "".join(self.lines).splitlines() if x.strip()]


@pytest.fixture(scope="module")
def cnn_parent(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("parent") / "cand"
    train_ensemble(holes(12, 5), out, opts("cnn", version="parent-v1"))
    return out


def test_training_and_serving_share_the_numpy_features():
    assert train_mod.make_batch is features.make_batch
    assert train_mod.target_positions is features.target_positions


def test_tiny_patchtsmixer_end_to_end(tmp_path):
    torch.set_num_threads(1)
    stream = Events()
    out = tmp_path / "cand"
    manifest = train_ensemble(holes(10, 1), out, opts("patchtsmixer", version="tiny-1"),
                              progress=Progress(json_lines=True, stream=stream),
                              card_fn=model_card)
    # Contract: the manifest and every file it names.
    m = read_manifest(out)
    assert m == json.loads(json.dumps(manifest, default=float))
    assert m["architecture"] == "patchtsmixer" and m["format"] == 1
    assert m["members"] == ["members/m0.onnx", "members/m1.onnx"]
    assert m["weights"] == ["weights/m0.safetensors", "weights/m1.safetensors"]
    assert m["parent"] is None and len(m["dataset_hash"]) == 64
    # served as its held-out metrics were: on the ramps, plus the learnt residual
    assert m["decode"] == {"place_on_ramps": True, "residual": True}
    assert set(m["placement"]["labels"]) == {"entry", "transition", "exit"}
    # fitted on its out-of-fold answers, or the hand-set default where none was wrong
    review = m["review"]
    weighed = REVIEW_FEATURES if review["fitted"] else REVIEW_DEFAULT.features
    assert review["features"] == list(weighed) and len(review["coef"]) == len(weighed)
    assert set(m["files"]) == {"members/m0.onnx", "members/m1.onnx", "probe.npz", "README.md",
                               "weights/m0.safetensors", "weights/m1.safetensors"}
    card = (out / "README.md").read_text()
    assert "tiny-1" in card and m["created_at"] in card and "patchtsmixer" in card
    for rel, digest in m["files"].items():
        assert sha256_file(out / rel) == digest
    assert FeatureSpec.from_dict(m["feature_spec"]) == SPEC
    assert not any(p.name.startswith(".cand") for p in tmp_path.iterdir())  # temp+work gone
    # Progress events for the job runner.
    ev = stream.events()
    kinds = [e["event"] for e in ev]
    assert kinds.count("epoch") == 2 and kinds.count("fold_done") == 2 and kinds[-1] == "done"
    first_epoch = next(e for e in ev if e["event"] == "epoch")
    assert {"fold", "epoch", "train_loss", "val_loss", "eta_s"} <= set(first_epoch)
    assert "calibrated" in kinds  # the review priority's calibration was fitted
    # The probe holds torch's outputs; onnxruntime reproduces them and decodes the same.
    probe = np.load(out / "probe.npz")
    for i, member in enumerate(m["members"]):
        sess = session(out / member)
        assert [i.name for i in sess.get_inputs()] == ["x", "scalars"]
        assert [o.name for o in sess.get_outputs()] == ["scores", "presence", "offset"]
        scores, presence, offset = sess.run(None, {"x": probe["x"],
                                                   "scalars": probe["scalars"]})
        assert np.max(np.abs(scores - probe[f"scores_{i}"])) <= 1e-4
        assert np.max(np.abs(presence - probe[f"presence_{i}"])) <= 1e-4
        assert np.max(np.abs(offset - probe[f"offset_{i}"])) <= 1e-4
    # A hole no member has seen, through onnxruntime and the serving decode.
    new = generate(3, 99)
    batch = make_batch([h.trace for h in new], SPEC)
    sess = session(out / m["members"][0])
    scores, presence, _ = sess.run(None, {"x": batch.x, "scalars": batch.scalars})
    decoded = decode(scores, presence, batch, SPEC)
    assert len(decoded) == 3
    arr = points_array(decoded)
    assert arr.shape == (3, 3)
    finite = arr[~np.isnan(arr)]
    assert np.all((finite >= SPEC.start_mm) & (finite <= SPEC.end_mm))


def test_a_convention_model_serves_without_its_placement_branch(tmp_path):
    """Trained with every residual target 0, the offset map adds nothing: the members are
    exported without it (a quarter less onnxruntime time) and the folder says so."""
    torch.set_num_threads(1)
    out = tmp_path / "conv"
    m = train_ensemble(holes(10, 2), out, opts("cnn", placement="convention"))
    assert m["decode"] == {"place_on_ramps": True, "residual": False}
    assert m["placement"]["mode"] == "convention"
    probe = np.load(out / "probe.npz")
    assert not any(k.startswith("offset_") for k in probe.files)
    sess = session(out / m["members"][0])
    assert [o.name for o in sess.get_outputs()] == ["scores", "presence"]
    # the weights keep the branch: a rig's fine-tune from this model learns its placement
    weights = load_file(str(out / m["weights"][0]))
    assert any(k.startswith("head.place.") for k in weights)


def test_head_only_finetune_keeps_backbone_and_records_lineage(cnn_parent, tmp_path):
    parent = read_manifest(cnn_parent)
    data = holes(10, 7)
    out = tmp_path / "ft"
    m = train_ensemble(data, out, opts("patchtsmixer", head_only=True, epochs=1),
                       parent_dir=cnn_parent)
    assert m["parent"] == "parent-v1"
    assert m["architecture"] == "cnn"  # a fine-tune keeps the parent's architecture
    assert m["dataset_hash"] == dataset_hash(data) != parent["dataset_hash"]
    assert m["training"]["head_only"] is True
    for i in range(2):
        before = load_file(str(cnn_parent / parent["weights"][i]))
        after = load_file(str(out / m["weights"][i]))
        backbone = [k for k in before if k.startswith("backbone.")]
        head = [k for k in before if k.startswith("head.")]
        assert backbone and head
        assert all(torch.equal(before[k], after[k]) for k in backbone)
        assert any(not torch.equal(before[k], after[k]) for k in head)


def test_refreshed_card_keeps_the_folder_verifiable(cnn_parent):
    from appliance.engine import read_manifest as engine_manifest
    from appliance.engine import verify_files

    refresh_card(cnn_parent, notes="\n## Note\n\nrefreshed by a test\n")
    assert "refreshed by a test" in (cnn_parent / "README.md").read_text()
    assert verify_files(engine_manifest(cnn_parent)) == []
    assert "README.md" in read_manifest(cnn_parent)["files"]


def test_full_finetune_unfreezes_the_backbone(cnn_parent, tmp_path):
    parent = read_manifest(cnn_parent)
    out = tmp_path / "ft"
    m = train_ensemble(holes(10, 8), out, opts("cnn", epochs=2, head_epochs=1),
                       parent_dir=cnn_parent)
    phases = [h["phase"] for h in m["training"]["histories"][0]]
    assert phases[0] == "head" and "full" in phases
    before = load_file(str(cnn_parent / parent["weights"][0]))
    after = load_file(str(out / m["weights"][0]))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))


def test_folds_never_split_a_group_and_support_24():
    rng = np.random.default_rng(0)
    groups = [f"g{int(g)}" for g in rng.integers(0, 60, size=400)]
    for k in (2, 5, 24):
        fold = assign_folds(groups, k, seed=3)
        for g in set(groups):
            assert len({int(fold[i]) for i, x in enumerate(groups) if x == g}) == 1
        sizes = np.bincount(fold, minlength=k)
        assert sizes.min() > 0 and sizes.max() - sizes.min() <= max(np.bincount(
            np.unique(groups, return_inverse=True)[1]))
    assert np.array_equal(assign_folds(groups, 5, 1), assign_folds(groups, 5, 1))
    with pytest.raises(ValidationError, match="at least 5 groups"):
        assign_folds(["a", "a", "b"], 5, 0)


def test_same_seed_same_member():
    torch.set_num_threads(1)
    data_holes = holes(8, 3)
    batch = make_batch([h.trace for h in data_holes], SPEC)
    labels = [h.label for h in data_holes]
    anchored = anchor_labels(labels, [read_trace(h.trace) for h in data_holes])
    data = train_mod.Tensors.of(batch, labels, SPEC, anchored)
    o = opts("cnn", epochs=2)
    o.model.length = SPEC.length
    states = []
    for seed in (1, 1, 2):
        o.seed = seed
        model = train_mod.init_member(o, 0, None)
        train_mod.fit_member(model, data, np.arange(2, 8), np.arange(2), o, 0, False,
                             lambda *a: None)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_loss_prefers_the_true_position_and_ignores_absent_points():
    length = 64
    pos = torch.tensor([[10.0, 20.0, 30.0]])
    present = torch.tensor([[1.0, 0.0, 1.0]])
    grid = torch.arange(length, dtype=torch.float32)
    good = -0.5 * (grid[None, None, :] - pos[..., None]) ** 2
    bad = -0.5 * (grid[None, None, :] - pos[..., None] - 3) ** 2
    logits = torch.tensor([[5.0, -5.0, 5.0]])
    assert point_loss(good, logits, pos, present, present, 1.0) < \
        point_loss(bad, logits, pos, present, present, 1.0)
    scores = good.clone().requires_grad_(True)
    point_loss(scores, logits, pos, present, present, 1.0).backward()
    assert torch.all(scores.grad[0, 1] == 0)  # absent transition: no position gradient
    assert torch.any(scores.grad[0, 0] != 0)


def _train_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "appliance.cli", "train", "--synthetic", "30", "--folds", "2",
            "--epochs", "3", "--arch", "cnn", "--seed", "4", "--progress-json",
            "--out", str(out)]


def test_killed_run_resumes_from_its_last_finished_fold(tmp_path):
    out = tmp_path / "cand"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_train_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=REPO)
    first = []
    try:
        for line in proc.stdout:
            ev = json.loads(line)
            first.append(ev)
            if ev["event"] == "fold_done" and ev["fold"] == 0:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert first[-1] == {**first[-1], "event": "fold_done", "fold": 0, "resumed": False}
    assert not out.exists()  # killed before any model folder was written
    work = tmp_path / ".cand.work"
    assert (work / "fold0.safetensors").is_file()

    rerun = subprocess.run(_train_cmd(out), capture_output=True, text=True, env=env, cwd=REPO,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    events = [json.loads(x) for x in rerun.stdout.splitlines() if x.startswith("{")]
    assert not [e for e in events if e["event"] == "epoch" and e["fold"] == 0]
    done0 = [e for e in events if e["event"] == "fold_done" and e["fold"] == 0]
    assert done0 and done0[0]["resumed"] is True
    assert [e for e in events if e["event"] == "epoch" and e["fold"] == 1]
    assert events[-1]["event"] == "done"
    assert read_manifest(out)["training"]["fold_reports"][0]["resumed"] is True
    assert not work.exists()


def test_train_command_reports_errors_as_events(tmp_path, capsys):
    from appliance.cli import main

    rc = main(["train", "--synthetic", "1", "--folds", "2", "--epochs", "1", "--progress-json",
               "--out", str(tmp_path / "x")])
    assert rc != 0
    ev = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert ev[-1]["event"] == "error" and "at least 2 groups" in ev[-1]["message"]


def test_train_command_reads_a_store_snapshot(tmp_path, capsys):
    from appliance.cli import main
    from appliance.store.facade import Store
    from appliance.store.snapshot import export_dataset

    with Store.open(tmp_path / "home") as store:
        for i, h in enumerate(generate(16, 21)):
            hole_id, _ = store.add_hole(h.trace, group=f"rig{i % 4}")
            store.add_label(hole_id, h.truth, by="test")
        export_dataset(store, tmp_path / "snap")
    out = tmp_path / "cand"
    rc = main(["train", "--dataset", str(tmp_path / "snap"), "--out", str(out), "--folds", "2",
               "--epochs", "1", "--arch", "cnn", "--progress-json"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    m = read_manifest(out)
    assert m["training"]["n_holes"] <= 16 and m["training"]["n_groups"] >= 2
    assert m["training"]["dataset"] == ["snap"]  # folder names: a card travels between boxes


def test_configs_saved_before_the_stem_still_build_their_model():
    from appliance.train.model import build_model

    old = ModelConfig().to_dict()
    del old["stem_dilations"], old["mixer_on_stem"]  # what a manifest from then holds
    cfg = ModelConfig.from_dict(old)
    assert cfg.stem_dilations == () and cfg.mixer_on_stem is False
    legacy = build_model("patchtsmixer", cfg)
    assert not any(k.startswith("backbone.stem.") for k in legacy.state_dict())
    now = build_model("patchtsmixer", ModelConfig())
    assert any(k.startswith("backbone.stem.") for k in now.state_dict())
    # a CNN's weight names are what the first CNN parents were saved with
    cnn = build_model("cnn", ModelConfig()).state_dict()
    assert "backbone.stem.weight" in cnn and "backbone.blocks.0.1.weight" in cnn
    x = torch.zeros(2, cfg.in_channels, cfg.length)
    s = torch.zeros(2, cfg.n_scalars)
    scores, presence, _ = legacy(x, s)
    assert scores.shape == (2, 3, cfg.length) and presence.shape == (2, 3)

