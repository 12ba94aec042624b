"""The training verbs without the train extra: a clear message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    from appliance.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_train_without_torch_says_install_the_train_extra(tmp_path):
    for argv in (["train", "--synthetic", "4", "--out", str(tmp_path / "c")],
                 ["train-baseline", "--out", str(tmp_path / "b")]):
        res = run_without_torch(*argv)
        assert res.returncode == 2
        assert "install the train extra" in res.stderr
        assert "Traceback" not in res.stderr
        assert not (tmp_path / "c").exists() and not (tmp_path / "b").exists()


def test_train_help_lists_the_options():
    res = run_without_torch("train", "--help")
    assert res.returncode == 0
    for opt in ("--dataset", "--out", "--parent", "--arch", "--folds", "--epochs",
                "--head-only", "--synthetic", "--seed", "--progress-json"):
        assert opt in res.stdout


class FakeTTY:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_terminal_progress_bar_redraws_one_line():
    from appliance.train.progress import Progress

    tty = FakeTTY()
    p = Progress(json_lines=False, stream=tty)
    p.emit("epoch", fold=0, epoch=0, train_loss=2.0, val_loss=2.5, eta_s=30.0,
           epochs_done=1, epochs_total=4)
    p.emit("epoch", fold=0, epoch=1, train_loss=1.5, val_loss=2.0, eta_s=20.0,
           epochs_done=2, epochs_total=4)
    p.emit("fold_done", fold=0, best_val_loss=2.0, epochs_run=2, resumed=False)
    assert tty.text.count("\r[") == 2 and "[###############---------------]" in tty.text
    assert tty.text.endswith("fold_done: fold=0 best_val_loss=2 epochs_run=2 resumed=False\n")
