"""The model card (README.md of a model folder), written from the manifest alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from appliance.engine.manifest import sha256_file
from appliance.estimators.placement import placement_table
from appliance.points import POINT_NAMES


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def metrics_table(m: dict[str, Any]) -> str:
    rows = ["| point | MAE mm | within 0.25 mm | within 0.5 mm | n | presence right |",
            "|---|---|---|---|---|---|"]
    for name in POINT_NAMES:
        p, pr = m["points"][name], m["presence"][name]
        rows.append(f"| {name} | {_fmt(p['mae_mm'])} | {_fmt(p['within_0_25'])} | "
                    f"{_fmt(p['within_0_5'])} | {p['n']} | {_fmt(pr['accuracy'])} "
                    f"(fp {pr['fp']}, fn {pr['fn']}) |")
    rows.append(f"\nHoles: {m['n']}; holes with all three presences right: "
                f"{_fmt(m['presence']['holes_all_right'])}")
    return "\n".join(rows)


def review_text(review: dict[str, Any] | None) -> str:
    """The review-priority calibration: what it was fitted on and how well it fits."""
    if not review:
        return "No review calibration (the hand-set default weighting ranks the queue)."
    rel = "\n".join(f"| {p:.3f} | {o:.3f} | {n} |" for p, o, n in review.get("reliability", []))
    coefs = ", ".join(f"{f} {c:+.2f}" for f, c in zip(review["features"], review["coef"],
                                                      strict=True))
    refit = review.get("refit")
    when = (f" Refitted on {refit['at'][:10]} without training (`appliance train-baseline "
            f"--recalibrate`): the members and their answers are those trained; the holes "
            f"were the recipe's as the generator makes them now (data set "
            f"{str(refit['dataset_hash'])[:12]})." if isinstance(refit, dict) else "")
    return (f"Logistic model fitted on {review.get('n')} out-of-fold answers ("
            f"{review.get('n_wrong')} wrong: a point > 0.5 mm off or a presence error; "
            f"augmented copies included), Brier score {review.get('brier')}.{when} "
            f"Standardised coefficients: {coefs}.\n\n| mean priority | share wrong | holes |\n"
            f"|---|---|---|\n{rel}")


def model_card(manifest: dict[str, Any], notes: str = "") -> str:
    t, metrics = manifest["training"], manifest["metrics"]
    opts = t.get("options", {})
    by_source = metrics.get("cv", {}).get("groups", {}).get("source", {})
    sources = "\n".join(f"  - {g}: {m['n']} holes" for g, m in by_source.items()) or "  - one"
    group_tables = "\n\n".join(f"#### {g}\n\n{metrics_table(m)}" for g, m in by_source.items())
    exam = metrics.get("exam_synthetic")
    exam_text = (f"### Unseen synthetic holes (seed {exam.get('seed')}, never trained on): "
                 f"the ensemble as served (members combined, points placed on their ramps)"
                 f"\n\n{metrics_table(exam)}") if exam else ""
    real = t.get("real_files")
    real_text = "" if real is None else (
        f"- real labelled Setitec logs: {real} (../shared/data/setitec/labels.csv, parsed "
        f"with appliance.ingest.parse_file; never committed to the repository); "
        f"{len(t.get('real_problems', []))} failed to parse\n")
    return f"""# Model card: {manifest['version']}

Created {manifest['created_at']} (UTC). Depth-point ensemble (entry, transition, exit) for
drilling traces: {len(manifest['members'])} members ({manifest['architecture']}), one per
cross-validation fold, exported to ONNX with torch.onnx.export(dynamo=True); max abs
difference onnxruntime vs torch at export: {_fmt(metrics.get('export_parity_max_abs'), 8)}.
Parent: {manifest.get('parent') or 'none (trained from scratch)'}.
Dataset hash: `{manifest.get('dataset_hash')}`.

## Data

- holes: {t.get('n_holes')} in {t.get('n_groups')} groups (folds never split a group:
  each synthetic hole is its own group, real logs are grouped by source)
- synthetic holes: {t.get('synthetic')} from appliance.synth.generate(n, seed=\
{t.get('synthetic_seed', opts.get('seed'))})
{real_text}- by source:
{sources}

## Config

- architecture `{manifest['architecture']}`, model config `{json.dumps(manifest['config'])}`
- features `{json.dumps(manifest['feature_spec'])}`
- training: {t.get('folds')} folds, <= {t.get('epochs')} epochs per member (early stopping,
  patience {opts.get('patience')}), batch {opts.get('batch_size')}, lr {opts.get('lr')},
  seed {t.get('seed')}, head_only {t.get('head_only')}; {t.get('duration_s')} s on the
  build machine's CPU

## Metrics

Computed with appliance.evaluation (the convention of ../shared/docs/depth-points.md):
MAE over holes where both label and estimate exist, presence counted separately.

{exam_text}

### Cross-validation, out of fold (each hole answered as served, by the member that never
trained on it: located, placed on its ramp's crossing, moved by the learnt residual)

{metrics_table(metrics['cv'])}

{group_tables}

## Learnt placement (median residual from the convention's crossing)

{placement_table(manifest.get('placement'))}

## Review priority

{review_text(manifest.get('review'))}
{notes}"""


def refresh_card(model_dir: str | Path, notes: str = "",
                 manifest: dict[str, Any] | None = None) -> None:
    """Rewrite README.md of a model folder from its manifest (`manifest`, when the caller
    has changed it, else the folder's) and write the manifest with the card's hash."""
    model_dir = Path(model_dir)
    if manifest is None:
        manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    (model_dir / "README.md").write_text(model_card(manifest, notes), encoding="utf-8")
    manifest["files"]["README.md"] = sha256_file(model_dir / "README.md")
    tmp = model_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, model_dir / "manifest.json")
