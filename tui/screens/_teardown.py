"""Background loads that outlive their screen.

A screen's data arrive from the daemon after an await; by then the operator may have left
the screen or closed the app, and its widgets are gone. Such a late answer is dropped; a
missing widget on a screen that is still up is a bug and is raised.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.css.query import NoMatches
from textual.screen import Screen

T = TypeVar("T")


def torn_down(screen: Screen[Any]) -> bool:
    return (not screen.is_attached or not screen.is_running or screen._closing
            or screen._closed)


def drop_if_torn_down(
    method: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T | None]]:
    @functools.wraps(method)
    async def wrapper(self: Screen[Any], *args: Any, **kwargs: Any) -> T | None:
        try:
            return await method(self, *args, **kwargs)
        except NoMatches:
            if torn_down(self):
                return None
            raise

    return wrapper
