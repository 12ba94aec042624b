"""The daemon's settings: built-in defaults, then `<home>/appliance.toml` (or --config), then flags.

The file has these tables, every key optional (see deploy/appliance.toml):

    [daemon]   home, host, port, open_reads, max_body_mb, body_timeout_s, trace_cache_mb,
               max_samples_per_hole
    [nightly]  enabled, time ("HH:MM", local), min_new_labels, auto_promote,
               folds, epochs, head_only, architecture
    [gates]    accuracy_tolerance_mm, latency_factor, min_exam
    [mqtt]     url, username, password, ca_file, cert_file, key_file, root, client_id,
               keypoints_suffix, depth_suffix, appliance_suffix, alarm_suffix,
               unmatched_expiry_h, heads_wait_s
    [watch]    paths, settle_s, group
    [train]    device, ray, min_free_mb, failed_candidate_keep_h

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
# a hole of more samples is refused at ingest (CLI, API, watched folders, MQTT): 10,000 s of
# drilling at 100 Hz, far beyond any hole, and what one hole may cost the store and a request
MAX_SAMPLES_PER_HOLE = 1_000_000
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
    # also fine-tune when a drill is in drift alarm and operators confirmed at least this many
    # of its holes since the alarm (fewer than min_new_labels will do then)
    on_drift: bool = True
    min_labels_after_drift: int = 10

    @property
    def hour_minute(self) -> tuple[int, int]:
        hh, mm = self.time.split(":")
        return int(hh), int(mm)


@dataclass(frozen=True)
class GateConfig:
    accuracy_tolerance_mm: float = 0.02
    latency_factor: float = 1.5
    min_exam: int = 20


# abyss's output topics (mqtt-contract.md), each one topic level below {root}/{toolbox}/{tool}
KEYPOINTS_SUFFIX = "ResultManagement.Results.0.ResultContent.DepthEstimation.KeyPoints"
DEPTH_SUFFIX = "ResultManagement.Results.0.ResultContent.DepthEstimation.DepthEstimation"
APPLIANCE_SUFFIX = "ResultManagement.Results.0.ResultContent.DepthEstimation.Appliance"


@dataclass(frozen=True)
class MqttConfig:
    """The rig's broker (mqtt-contract.md). url None: the bus is off."""

    url: str | None = None  # mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # TLS: the broker's CA (mqtts:// without it: system CAs)
    cert_file: str | None = None  # TLS client certificate and its key
    key_file: str | None = None
    root: str = "OPCPUBSUB"
    client_id: str | None = None  # None: derived from the home, so two appliances differ
    keypoints_suffix: str = KEYPOINTS_SUFFIX
    depth_suffix: str = DEPTH_SUFFIX
    appliance_suffix: str = APPLIANCE_SUFFIX  # the appliance's own, fuller payload
    # drift alarms go to {root}/{alarm_suffix}/{drill}
    alarm_suffix: str = "Appliance.DriftAlarm"
    # an unmatched message waits this long (arrival time, never the device clock)
    unmatched_expiry_h: float = 24.0
    # on a tool that sends heads messages, a result + trace pair waits this long for its
    # heads (HeadId) before it is estimated and published; tools that never sent one do not
    # wait, and a heads message arriving later is still recorded on its hole
    heads_wait_s: float = 5.0


@dataclass(frozen=True)
class WatchConfig:
    """Folders whose new Setitec logs are ingested as they appear."""

    paths: tuple[str, ...] = ()
    settle_s: float = 1.0  # a file is read once its size has not changed for this long
    group: str | None = None  # cross-validation group of its holes (None: the drill serial)


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """How the daemon's training jobs (fine-tunes, the nightly, searches) run."""

    device: str = "auto"  # auto: CUDA when torch sees it, else the CPU
    # None: folds one after another in the job's process; "local": a Ray cluster on this box;
    # "auto" or an address (HOST:PORT, ray://HOST:PORT): an existing Ray cluster
    ray: str | None = None
    # a new job is refused (HTTP 507) with less free space than this on the home's disk:
    # snapshot, checkpoints and candidate would fill it half-way, under the store
    min_free_mb: float = 500.0
    # a candidate registered by a job that then failed (the daemon died gating it, a gate
    # crashed) is set aside at once and its folder removed this many hours after the job ended
    failed_candidate_keep_h: float = 24.0


@dataclass(frozen=True)
class DaemonConfig:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8470
    open_reads: bool = False
    max_body_mb: float = 20.0
    # a request's body must arrive within this (408 after): a client trickling or stalling
    # its body would otherwise hold a connection and its buffer for ever
    body_timeout_s: float = 30.0
    trace_cache_mb: float = 64.0  # downsampled traces kept in memory, encoded
    max_samples_per_hole: int = MAX_SAMPLES_PER_HOLE
    # worker processes that answer estimates (parse, rules, model) beside the daemon's own
    # process; -1: one per model thread (appliance.services.batching), 0: none
    estimate_processes: int = -1
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    source: str | None = None  # the file the settings came from, for messages

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def trace_cache_bytes(self) -> int:
        return int(self.trace_cache_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


_DAEMON_KEYS = {"home": str, "host": str, "port": int, "open_reads": bool,
                "max_body_mb": (int, float), "body_timeout_s": (int, float),
                "trace_cache_mb": (int, float), "max_samples_per_hole": int,
                "estimate_processes": int}


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
    unknown = set(data) - {"daemon", "nightly", "gates", "mqtt", "watch", "train"}
    if unknown:
        raise ValidationError(f"{where}: unknown table(s) {sorted(unknown)}; "
                              "expected [daemon], [nightly], [gates], [mqtt], [watch], [train]")
    daemon = _checked(data.get("daemon", {}), _DAEMON_KEYS, where, "daemon")
    nightly = _section(NightlyConfig, data.get("nightly", {}), where, "nightly")
    gates = _section(GateConfig, data.get("gates", {}), where, "gates")
    mqtt = _section(MqttConfig, data.get("mqtt", {}), where, "mqtt")
    watch = _section(WatchConfig, data.get("watch", {}), where, "watch")
    train = _section(TrainConfig, data.get("train", {}), where, "train")
    if watch.paths:
        base = Path(source).parent if source else Path.cwd()
        watch = replace(watch, paths=tuple(str((base / Path(p).expanduser()).resolve())
                                           for p in watch.paths))
    file_home = daemon.pop("home", None)
    if home is None and file_home is not None:
        base = Path(source).parent if source else Path.cwd()
        home_path = (base / Path(file_home).expanduser()).resolve()
    else:
        home_path = resolve_home(home)
    cfg = DaemonConfig(home=home_path, nightly=nightly, gates=gates, mqtt=mqtt, watch=watch,
                       train=train, source=source, **daemon)
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
                "str | None": str, "float | None": (int, float),
                "tuple[str, ...]": list}[str(f.type)]
        types[f.name] = kind
    values = _checked(table, types, where, name)
    for key, value in values.items():
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ValidationError(f"{where}: [{name}].{key} must be a list of strings")
            values[key] = tuple(value)
    return cls(**values)


def _validated(cfg: DaemonConfig) -> DaemonConfig:
    where = cfg.source or "settings"
    problems: list[str] = []
    if not 0 < cfg.port < 65536:
        problems.append(f"port {cfg.port} is not in 1..65535")
    if cfg.max_body_mb <= 0:
        problems.append(f"max_body_mb {cfg.max_body_mb} must be positive")
    if cfg.body_timeout_s <= 0:
        problems.append(f"body_timeout_s {cfg.body_timeout_s} must be positive")
    if cfg.trace_cache_mb < 0:
        problems.append(f"trace_cache_mb {cfg.trace_cache_mb} must be >= 0 (0: no cache)")
    if cfg.max_samples_per_hole < 1:
        problems.append(f"max_samples_per_hole {cfg.max_samples_per_hole} must be >= 1")
    if not -1 <= cfg.estimate_processes <= 64:
        problems.append(f"estimate_processes {cfg.estimate_processes} must be -1 (one per "
                        "model thread), 0 (none) or up to 64")
    n = cfg.nightly
    try:
        hh, mm = n.hour_minute
        if not (0 <= hh < 24 and 0 <= mm < 60) or len(n.time) != 5:
            raise ValueError
    except ValueError:
        problems.append(f"nightly.time {n.time!r} is not HH:MM (24 h, local)")
    if n.min_new_labels < 0 or n.min_labels_after_drift < 0:
        problems.append("nightly.min_new_labels and min_labels_after_drift must be >= 0")
    if not 2 <= n.folds <= 24:
        problems.append(f"nightly.folds {n.folds} is not in 2..24")
    if not 1 <= n.epochs <= 1000:
        problems.append(f"nightly.epochs {n.epochs} is not in 1..1000")
    if n.architecture is not None and n.architecture not in ARCHITECTURES:
        problems.append(f"nightly.architecture {n.architecture!r} is not one of {ARCHITECTURES}")
    g = cfg.gates
    if g.accuracy_tolerance_mm < 0 or g.latency_factor < 1 or g.min_exam < 0:
        problems.append("gates: accuracy_tolerance_mm >= 0, latency_factor >= 1, min_exam >= 0")
    problems += _mqtt_problems(cfg.mqtt)
    if cfg.watch.settle_s < 0:
        problems.append("watch.settle_s must be >= 0")
    if cfg.train.device not in DEVICES:
        problems.append(f"train.device {cfg.train.device!r} is not one of {DEVICES}")
    if cfg.train.ray is not None and not cfg.train.ray.strip():
        problems.append("train.ray is empty: leave it out to train without Ray")
    if cfg.train.min_free_mb < 0:
        problems.append(f"train.min_free_mb {cfg.train.min_free_mb} must be >= 0")
    if cfg.train.failed_candidate_keep_h < 0:
        problems.append(f"train.failed_candidate_keep_h {cfg.train.failed_candidate_keep_h} "
                        "must be >= 0")
    if problems:
        raise ValidationError(f"{where}: " + "; ".join(problems))
    return cfg


def _mqtt_problems(m: MqttConfig) -> list[str]:
    problems: list[str] = []
    if m.url is not None:
        try:
            parse_broker_url(m.url)
        except ValueError as exc:
            problems.append(f"mqtt.url: {exc}")
    for name in ("root", "keypoints_suffix", "depth_suffix", "appliance_suffix", "alarm_suffix"):
        value = getattr(m, name)
        if not value or any(c in value for c in "+#/") or any(ord(c) < 32 for c in value):
            problems.append(f"mqtt.{name} {value!r} must be one non-empty topic level "
                            "(no '/', '+' or '#')")
    if m.unmatched_expiry_h <= 0:
        problems.append("mqtt.unmatched_expiry_h must be > 0")
    if m.heads_wait_s < 0:
        problems.append("mqtt.heads_wait_s must be >= 0")
    if (m.cert_file is None) != (m.key_file is None):
        problems.append("mqtt.cert_file and mqtt.key_file go together")
    return problems


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """mqtt://HOST[:PORT] (default 1883) or mqtts://HOST[:PORT] (TLS, default 8883)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r} is not mqtt://HOST:PORT or mqtts://HOST:PORT")
    if parts.username or parts.password:
        raise ValueError(f"{url!r}: give the login as [mqtt] username/password, not in the url")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number in 1..65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: the url takes no path; the root topic is [mqtt] root")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)
