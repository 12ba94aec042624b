"""Serving runs without torch: engine, registry, gates and the CLI import and work in a process
where importing torch is impossible."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from model_fixtures import build_model_folder, ramp_trace

from appliance.ingest.setitec_writer import write_setitec

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())

    import appliance.engine, appliance.registry, appliance.gates, appliance.cli
    import appliance.commands.predict, appliance.commands.models
    from appliance.engine import Engine
    from appliance.ingest import parse_file

    engine = Engine.from_dir(sys.argv[1])
    est = engine.estimate(parse_file(sys.argv[2]))
    assert est.estimator == "ensemble", est
    code = appliance.cli.main(["predict", sys.argv[2], "--model", sys.argv[1],
                               "--home", sys.argv[3], "--json"])
    assert code == 0, code
    leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not leaked, leaked
    print("NO-TORCH-OK", est.model_version)
""")


def test_serving_imports_and_runs_without_torch(tmp_path: Path) -> None:
    model = build_model_folder(tmp_path, "nt")
    log = tmp_path / "hole.xls"
    log.write_bytes(write_setitec(ramp_trace()))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), str(log), str(tmp_path / "home")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NO-TORCH-OK nt" in proc.stdout
