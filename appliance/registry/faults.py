"""Named steps of register/activate, where tests inject a crash.

Production code calls `checkpoint("register:renamed")` etc.; `hook` is None except in tests,
which set it to raise at one step and then reopen the registry to check recovery.
"""

from __future__ import annotations

from collections.abc import Callable

REGISTER_STEPS = ("register:copied", "register:sealed", "register:renamed", "register:recorded")
ACTIVATE_STEPS = ("activate:loaded", "activate:swapped", "activate:recorded")

hook: Callable[[str], None] | None = None


class SimulatedCrash(BaseException):  # noqa: N818 - it stands for a kill, not an error
    """Raised by a test hook: a BaseException so that no `except Exception` tidies up after it,
    which is what a real kill would leave behind."""


def checkpoint(step: str) -> None:
    if hook is not None:
        hook(step)
