"""A real Mosquitto on a free loopback port, for the MQTT tests and benchmarks/mqtt.py.

Test and benchmark tooling only (nothing under appliance/ imports it). The tests import it
as `mqtt_broker` (pytest puts tests/ on sys.path, as for model_fixtures); benchmarks add
tests/ to sys.path the same way.

The broker is configured the way the appliance relies on a rig's broker behaving: persistent
sessions kept across a graceful restart, and no per-client queue cap, so that a persistent
session keeps every QoS 1 message published while the appliance is down.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from loopback import HOST, free_port


def mosquitto_path() -> str | None:
    """The mosquitto binary, or None. Debian installs it in /usr/sbin, which is not on a
    normal user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, the broker's certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Self-signed CA and certificates made with openssl (in the Debian base image)."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for who, cn in (("server", "127.0.0.1"), ("client", "appliance")):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout",
            f"{who}.key", "-out", f"{who}.csr")
        ssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{who}.pem", "-extfile", "san.ext")
    return TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                    folder / "client.pem", folder / "client.key")


class MosquittoError(RuntimeError):
    """The broker did not start (the message carries the tail of its log)."""


class Mosquitto:
    """One broker process, its config, persistence and log in `workdir`.

    `port` 0 picks a free port at the first start(); restart() then reuses it, so clients
    (and the appliance) reconnect to the same address. `workdir` None: a temp dir that
    close() removes; a given workdir (e.g. pytest's tmp_path) is left in place, logs included.
    """

    def __init__(self, port: int = 0, workdir: Path | str | None = None,
                 binary: str | None = None, max_inflight: int = 100,
                 autosave_interval_s: int = 1, start_timeout_s: float = 10.0,
                 tls: TlsFiles | None = None) -> None:
        self._binary = binary or mosquitto_path()
        if self._binary is None:
            raise MosquittoError("mosquitto is not installed (apt-get install mosquitto)")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="mosquitto-") if workdir is None
                            else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._port = port
        self.max_inflight = max_inflight
        self.autosave_interval_s = autosave_interval_s
        self.start_timeout_s = start_timeout_s
        self.tls = tls  # a TLS listener that also requires a client certificate
        self._proc: subprocess.Popen[bytes] | None = None

    # -- where ---------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """The listening port (0 until the first start() when none was given)."""
        return self._port

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{HOST}:{self._port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def persistence_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> Mosquitto:
        """Start the broker and wait until its port accepts a connection."""
        if self.running:
            return self
        # a port picked here can be taken by someone else before mosquitto binds it: only a
        # port we chose ourselves is worth choosing again
        chosen = self._port == 0
        attempts = 3 if chosen else 1
        for attempt in range(attempts):
            if chosen:
                self._port = free_port()
            try:
                self._launch()
                return self
            except MosquittoError:
                if attempt == attempts - 1:
                    raise
        return self

    def _launch(self) -> None:
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._config(), encoding="utf-8")
        log_start = self.log_path.stat().st_size if self.log_path.is_file() else 0
        with open(self.workdir / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen([str(self._binary), "-c", str(self.conf_path)],
                                          stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise MosquittoError(f"mosquitto exited with {code} at start on port "
                                     f"{self._port}:\n{self.log_tail()}")
            # an accepted connection alone proves nothing: mosquitto listens with
            # SO_REUSEPORT, so another broker (or any socket) may hold the same port. Only
            # this launch's "running" line says that this process bound its listener.
            if self._logged_running(log_start) and self._accepts():
                return
            time.sleep(0.05)
        self.kill()
        raise MosquittoError(f"mosquitto did not come up on {HOST}:{self._port} within "
                             f"{self.start_timeout_s:.0f} s:\n{self.log_tail()}")

    def _logged_running(self, offset: int) -> bool:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return b" running" in fh.read()
        except OSError:
            return False

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((HOST, self._port), timeout=0.5) as s:
                # a connect to a port nobody listens on can "succeed" as a TCP self-connect
                return s.getsockname() != s.getpeername()
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful: SIGTERM makes mosquitto write its persistence file before it exits."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: what a power cut does; state since the last autosave is lost."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> Mosquitto:
        """Graceful stop, then start on the same port with the same persistence."""
        if self._port == 0:
            raise MosquittoError("restart() before start(): there is no port to keep")
        self.stop()
        self._launch()
        return self

    def close(self) -> None:
        """Stop, and remove the workdir when this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- diagnostics ---------------------------------------------------------------------------
    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.log_path, self.workdir / "stdout.log"):
            if path.is_file():
                text += path.read_text(encoding="utf-8", errors="replace")
        # the autosave line every interval would push everything useful out of the tail
        kept = [line for line in text.splitlines() if "Saving in-memory database" not in line]
        return "\n".join(kept[-lines:]) or "(the log is empty)"

    def _config(self) -> str:
        lines = [
            f"listener {self._port} {HOST}",
            "allow_anonymous true",
            "persistence true",
            # mosquitto concatenates this with the file name: it needs the trailing slash
            f"persistence_location {self.persistence_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            # 0 = no cap: with the default 1000 a persistent session that is away for a
            # few seconds at 300 messages/s would silently lose messages
            "max_queued_messages 0",
            f"max_inflight_messages {self.max_inflight}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.server_cert}",
                      f"keyfile {self.tls.server_key}", "require_certificate true"]
        if os.geteuid() == 0:
            # as root, mosquitto drops to the user 'mosquitto', which can neither write this
            # temp dir nor may exist at all: stay the user that owns the workdir
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Mosquitto({self.url}, {state}, workdir={str(self.workdir)!r})"
