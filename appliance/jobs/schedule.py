"""The nightly fine-tune schedule: a thread that wakes at a local time of day."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

log = logging.getLogger("appliance.nightly")


def next_run(now: datetime, hour: int, minute: int) -> datetime:
    """The first time at hour:minute strictly after `now` (same tz as `now`)."""
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return at


class NightlySchedule:
    """Calls `run()` once a day at hour:minute local time until stopped."""

    def __init__(self, hour: int, minute: int, run: Callable[[], object],
                 clock: Callable[[], datetime] = lambda: datetime.now().astimezone()) -> None:
        self._hour, self._minute = hour, minute
        self._run = run
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_at: datetime | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nightly", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            self.next_at = next_run(now, self._hour, self._minute)
            # wake at least every minute: a clock change (DST, NTP step) is caught quickly
            wait = min((self.next_at - now).total_seconds(), 60.0)
            if self._stop.wait(wait):
                return
            if self._clock() >= self.next_at:
                try:
                    outcome = self._run()
                    log.info("nightly fine-tune: %s", outcome)
                except Exception:  # the schedule must survive one bad night
                    log.exception("nightly fine-tune failed")
