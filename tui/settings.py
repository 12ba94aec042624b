"""The operator's TUI settings: who confirms labels, which daemon, which key.

Kept in a small TOML file ($APPLIANCE_TUI_SETTINGS, else ~/.config/appliance/tui.toml)
so the name survives across sessions; command-line options win over the file.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.client import DEFAULT_URL


def settings_path() -> Path:
    env = os.environ.get("APPLIANCE_TUI_SETTINGS")
    if env:
        return Path(env).expanduser()
    return Path("~/.config/appliance/tui.toml").expanduser()


@dataclass
class Settings:
    operator: str
    url: str = DEFAULT_URL
    key: str | None = None
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or settings_path()
        data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: not valid TOML ({exc})") from exc
        operator = str(data.get("operator") or _login_name())
        return cls(
            operator=operator,
            url=str(data.get("url") or DEFAULT_URL),
            key=data.get("key"),
            path=path,
        )

    def save(self) -> Path:
        """Write the operator and URL (never the key: keys are given per session)."""
        path = self.path or settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"operator = {_toml_str(self.operator)}\nurl = {_toml_str(self.url)}\n",
            encoding="utf-8",
        )
        return path


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"
