"""Training progress: JSON lines for the job runner, or a plain bar on a terminal."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Progress:
    """Emits {"event": "epoch"|"fold_done"|"done"|"error", ...} as one JSON object per line
    (json_lines=True, on stdout) or draws a one-line bar on stderr when that is a TTY."""

    def __init__(self, json_lines: bool = False, stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.stream = stream or (sys.stdout if json_lines else sys.stderr)
        self.tty = (not json_lines) and self.stream.isatty()
        self.started = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        if self.json_lines:
            self.stream.write(json.dumps({"event": event, **fields}, default=float) + "\n")
            self.stream.flush()
        elif self.tty:
            self._draw(event, fields)
        elif event in ("fold_done", "done", "error"):
            self.stream.write(f"{event}: {_short(fields)}\n")
            self.stream.flush()

    def _draw(self, event: str, f: dict[str, Any]) -> None:
        if event == "epoch":
            done, total = f.get("epochs_done", 0), max(f.get("epochs_total", 1), 1)
            width = 30
            filled = int(width * min(done / total, 1.0))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r[{bar}] fold {f['fold']} epoch {f['epoch']} train {f['train_loss']:.4f} "
                f"val {f['val_loss']:.4f} eta {f.get('eta_s', 0):.0f}s ")
        else:
            self.stream.write(f"\r{event}: {_short(f)}\n")
        self.stream.flush()


def _short(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        if isinstance(v, dict | list):
            continue
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)
