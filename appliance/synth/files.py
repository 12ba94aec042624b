"""Synthetic holes on disk: Setitec files through the ingest writer, plus a labels.csv in
the layout of ../shared/data/setitec/labels.csv (method=synthetic, notes=stack type)."""

from __future__ import annotations

from pathlib import Path

from appliance.evaluation.labels import LabelRow, write_labels
from appliance.synth.generator import SynthHole


def write_dataset(holes: list[SynthHole], out_dir: str | Path, variant: str = "v9",
                  prefix: str = "synth") -> Path:
    """Write one Setitec file per hole and labels.csv; returns the labels.csv path."""
    from appliance.ingest.setitec_writer import write_setitec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    width = max(5, len(str(len(holes))))
    for i, hole in enumerate(holes):
        name = f"{prefix}_{i:0{width}d}.xls"
        (out / name).write_bytes(write_setitec(hole.trace, variant=variant))
        rows.append(LabelRow(name, hole.truth, "synthetic", "high", hole.spec.stack_type))
    labels = out / "labels.csv"
    write_labels(rows, labels)
    return labels
