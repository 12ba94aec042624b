"""onnxruntime time per hole of one member: the training module exported as it is against the
served form the appliance exports (appliance.train.served_form). Run by hand:

    python benchmarks/export_form.py [--model DIR] [--rounds 15]

Both graphs come from the same weights (the folder's first member, default the shipped
baseline) in this run; they are timed in turns, one thread each as the daemon's model workers
run, at the batch sizes the daemon uses, and the figure to read is the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from appliance.engine.sessions import make_session
from appliance.home import baseline_model_dir
from appliance.train.export import check_parity, export_onnx, load_members, read_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=baseline_model_dir())
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    raw = read_manifest(args.model)
    model = load_members(args.model, raw)[0]
    probe = np.load(args.model / raw["probe"], allow_pickle=False)
    x, s = probe["x"], probe["scalars"]
    offset = bool((raw.get("decode") or {}).get("residual", False))
    sessions: dict[str, ort.InferenceSession] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, as_trained in (("as trained", True), ("served form", False)):
            path = Path(tmp) / f"{name.replace(' ', '_')}.onnx"
            t0 = time.perf_counter()
            export_onnx(model, path, x[:2], s[:2], offset=offset, as_trained=as_trained)
            parity = check_parity(model, path, x, s)
            print(f"{name:12s} exported in {time.perf_counter() - t0:5.1f} s, "
                  f"parity with torch {parity:.2g}")
            sessions[name] = make_session(path.read_bytes(), threads=1)
    print(f"\nmember {args.model.name}/{raw['members'][0]} ({raw['version']}), "
          f"{'with' if offset else 'without'} the offset output; ms per hole, median of "
          f"{args.rounds} rounds\n")
    print("| batch | as trained | served form | ratio |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(0)
    for batch in (1, 8, 32):
        idx = rng.integers(0, len(x), batch)
        feed = {"x": x[idx], "scalars": s[idx]}
        reps = max(1, 32 // batch)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for sess in sessions.values():
            sess.run(None, feed)
        for _ in range(args.rounds):
            for name, sess in sessions.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    sess.run(None, feed)
                times[name].append((time.perf_counter() - t0) / reps / batch * 1e3)
        a, b = (statistics.median(times[k]) for k in ("as trained", "served form"))
        print(f"| {batch} | {a:.3f} | {b:.3f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
