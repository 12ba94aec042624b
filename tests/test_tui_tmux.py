"""The TUI in a real terminal: `appliance tui` under tmux, driven by keys, read off the screen.

Skipped when tmux is not installed (CI installs it: apt-get install -y tmux).
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tui_double import KEY, FakeDaemon

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tmux:
    """One private tmux server (its own socket) holding one window of a fixed size."""

    def __init__(self, command: str, tmp: Path) -> None:
        self.socket = f"tui-test-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "36", command)
        self.tmux("resize-window", "-t", "tui", "-x", "120", "-y", "36")

    def tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                             text=True, timeout=20, check=False)
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "tui", *keys)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def alive(self) -> bool:
        return "tui" in self.tmux("list-sessions")

    def close(self) -> None:
        self.tmux("kill-server")


def tui_command(url: str, tmp: Path, key: str | None = None) -> str:
    args = [sys.executable, "-m", "appliance.cli", "tui", "--url", url, "--operator", "ana"]
    if key:
        args += ["--key", key]
    env = {"APPLIANCE_TUI_SETTINGS": str(tmp / "tui.toml"), "APPLIANCE_HOME": str(tmp / "h"),
           "TERM": "xterm-256color"}
    # keep the window open after the app exits, so the test can read what it left behind
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()),
                     *map(shlex.quote, args)]) + "; echo TUI-EXITED-$?; sleep 30"


@pytest.fixture
def served_double() -> Iterator[tuple[str, FakeDaemon]]:
    daemon = FakeDaemon.seeded()
    with daemon.served() as url:
        yield url, daemon


def test_queue_hole_and_label_in_a_real_terminal(
    served_double: tuple[str, FakeDaemon], tmp_path: Path
) -> None:
    url, daemon = served_double
    term = Tmux(tui_command(url, tmp_path, KEY), tmp_path)
    try:
        screen = term.wait_for("hole_004.xls")
        assert "daemon ok" in term.wait_for("daemon ok")
        # the most uncertain hole is first; open it, move exit 1 mm shallower, confirm
        assert screen.index("hole_004.xls") < screen.index("hole_001.xls")
        term.keys("Enter")
        term.wait_for("stack thickness")
        term.keys("x", "[")
        term.wait_for("moved")
        term.keys("Enter")
        deadline = time.monotonic() + 20
        while not daemon.labels["0000000000000004"]:
            assert time.monotonic() < deadline, term.screen()
            time.sleep(0.2)
        label = daemon.labels["0000000000000004"][-1]
        assert label.by == "ana"
        assert label.exit_mm == pytest.approx(19.45 - 1.0)
        term.wait_for("(2/5)")  # it moved on to the next hole
        term.keys("Escape")
        term.wait_for("holes · most")
        term.keys("q")
        assert "TUI-EXITED-0" in term.wait_for("TUI-EXITED")
    finally:
        term.close()


def test_no_daemon_is_said_and_quit_is_clean(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    term = Tmux(tui_command(url, tmp_path), tmp_path)
    try:
        screen = term.wait_for("No daemon answers")
        assert "Start one on the default home" in screen and "Traceback" not in screen
        term.keys("q")
        screen = term.wait_for("TUI-EXITED")
        assert "TUI-EXITED-1" in screen and "Traceback" not in screen
    finally:
        term.close()
