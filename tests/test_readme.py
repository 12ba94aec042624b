"""The README's two set-up commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)[:2]]


def test_ci_runs_the_readme_test_command() -> None:
    main_cmd, test_cmd = _setup_commands()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines, "the README's test command is not what .ci/run runs"
    assert "pytest" in test_cmd and "torch==2.13.0" in test_cmd


def test_main_command_names_a_real_verb() -> None:
    main_cmd, _ = _setup_commands()
    verb = main_cmd.split("&&")[-1].split()[1]
    choices = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    assert verb in choices and main_cmd.startswith("pip install torch==2.13.0")
