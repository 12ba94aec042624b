"""The daemon's settings: built-in defaults, then `<home>/appliance.toml` (or --config), then flags.

The file has three tables, every key optional (see deploy/appliance.toml):

    [daemon]   home, host, port, open_reads, max_body_mb
    [nightly]  enabled, time ("HH:MM", local), min_new_labels, auto_promote,
               folds, epochs, head_only, architecture
    [gates]    accuracy_tolerance_mm, latency_factor, min_exam

An unknown table or key, or a value of the wrong type, is refused with the file and key named:
a typo in a rig's config must not silently fall back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from appliance.errors import ValidationError
from appliance.home import resolve_home

CONFIG_NAME = "appliance.toml"
ARCHITECTURES = ("patchtsmixer", "cnn")


@dataclass(frozen=True)
class NightlyConfig:
    enabled: bool = True
    time: str = "02:00"  # local time of day
    min_new_labels: int = 20
    auto_promote: bool = True
    folds: int = 5
    epochs: int = 20
    head_only: bool = False
    architecture: str | None = None  # None: the parent's architecture
    # after an automatic promotion, compare the new model with the previous one on the most
    # recently confirmed holes; a per-point MAE worse by more than this rolls back (None: off)
    auto_rollback_mm: float | None = 0.1

    @property
    def hour_minute(self) -> tuple[int, int]:
        hh, mm = self.time.split(":")
        return int(hh), int(mm)


@dataclass(frozen=True)
class GateConfig:
    accuracy_tolerance_mm: float = 0.02
    latency_factor: float = 1.5
    min_exam: int = 20


@dataclass(frozen=True)
class DaemonConfig:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8470
    open_reads: bool = False
    max_body_mb: float = 20.0
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    source: str | None = None  # the file the settings came from, for messages

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


_DAEMON_KEYS = {"home": str, "host": str, "port": int, "open_reads": bool,
                "max_body_mb": (int, float)}


def load_config(
    home: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> DaemonConfig:
    """Defaults <- TOML file <- overrides (flags given on the command line; None = not given).

    The file is `config_path` when given (it must exist), else `<home>/appliance.toml` when it
    exists. A `home` inside the file applies only when no home was given on the command line.
    """
    data: dict[str, Any] = {}
    source: str | None = None
    if config_path is not None:
        path = Path(config_path).expanduser()
        if not path.is_file():
            raise ValidationError(f"{path}: config file not found")
        data, source = _read_toml(path), str(path)
    else:
        path = resolve_home(home) / CONFIG_NAME
        if path.is_file():
            data, source = _read_toml(path), str(path)
    where = source or "defaults"
    unknown = set(data) - {"daemon", "nightly", "gates"}
    if unknown:
        raise ValidationError(f"{where}: unknown table(s) {sorted(unknown)}; "
                              "expected [daemon], [nightly], [gates]")
    daemon = _checked(data.get("daemon", {}), _DAEMON_KEYS, where, "daemon")
    nightly = _section(NightlyConfig, data.get("nightly", {}), where, "nightly")
    gates = _section(GateConfig, data.get("gates", {}), where, "gates")
    file_home = daemon.pop("home", None)
    if home is None and file_home is not None:
        base = Path(source).parent if source else Path.cwd()
        home_path = (base / Path(file_home).expanduser()).resolve()
    else:
        home_path = resolve_home(home)
    cfg = DaemonConfig(home=home_path, nightly=nightly, gates=gates, source=source, **daemon)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        cfg = replace(cfg, **given)
    return _validated(cfg)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read: {exc.strerror}") from None


def _checked(table: Any, types: dict[str, Any], where: str, name: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValidationError(f"{where}: [{name}] must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in types:
            raise ValidationError(f"{where}: unknown key [{name}].{key}; "
                                  f"known keys: {', '.join(sorted(types))}")
        expected = types[key]
        # bool is an int in Python; a port of `true` is still a mistake
        if isinstance(value, bool) and expected is not bool:
            ok = False
        else:
            ok = isinstance(value, expected)
        if not ok:
            raise ValidationError(f"{where}: [{name}].{key} = {value!r} has the wrong type")
        out[key] = value
    return out


def _section(cls: type, table: Any, where: str, name: str) -> Any:
    types: dict[str, Any] = {}
    for f in fields(cls):
        kind = {"bool": bool, "int": int, "float": (int, float), "str": str,
                "str | None": str, "float | None": (int, float)}[str(f.type)]
        types[f.name] = kind
    return cls(**_checked(table, types, where, name))


def _validated(cfg: DaemonConfig) -> DaemonConfig:
    where = cfg.source or "settings"
    problems: list[str] = []
    if not 0 < cfg.port < 65536:
        problems.append(f"port {cfg.port} is not in 1..65535")
    if cfg.max_body_mb <= 0:
        problems.append(f"max_body_mb {cfg.max_body_mb} must be positive")
    n = cfg.nightly
    try:
        hh, mm = n.hour_minute
        if not (0 <= hh < 24 and 0 <= mm < 60) or len(n.time) != 5:
            raise ValueError
    except ValueError:
        problems.append(f"nightly.time {n.time!r} is not HH:MM (24 h, local)")
    if n.min_new_labels < 0:
        problems.append("nightly.min_new_labels must be >= 0")
    if not 2 <= n.folds <= 24:
        problems.append(f"nightly.folds {n.folds} is not in 2..24")
    if not 1 <= n.epochs <= 1000:
        problems.append(f"nightly.epochs {n.epochs} is not in 1..1000")
    if n.architecture is not None and n.architecture not in ARCHITECTURES:
        problems.append(f"nightly.architecture {n.architecture!r} is not one of {ARCHITECTURES}")
    g = cfg.gates
    if g.accuracy_tolerance_mm < 0 or g.latency_factor < 1 or g.min_exam < 0:
        problems.append("gates: accuracy_tolerance_mm >= 0, latency_factor >= 1, min_exam >= 0")
    if problems:
        raise ValidationError(f"{where}: " + "; ".join(problems))
    return cfg
