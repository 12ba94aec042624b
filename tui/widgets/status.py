"""The status line every screen shows: daemon, drift alarms, active model, running job, new
holes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from appliance.records import DrillDrift


@dataclass(frozen=True)
class DaemonStatus:
    reachable: bool | None = None  # None: not asked yet
    message: str = "connecting…"
    active_version: str = "-"
    job: str = "no job"
    new_holes: int = 0
    retries: int = 0
    drift_alarms: tuple[DrillDrift, ...] = ()  # drills in alarm; empty too without /drift


def drift_text(alarms: tuple[DrillDrift, ...]) -> str:
    """One alarm is named with the hole that raised it; several are counted (the drift
    screen, key 4, lists them)."""
    if not alarms:
        return ""
    if len(alarms) > 1:
        return f"DRIFT: {len(alarms)} drills in alarm"
    alarm = alarms[0]
    at = f" since hole {alarm.alarm_at_hole}" if alarm.alarm_at_hole is not None else ""
    return f"DRIFT: drill {alarm.drill}{at}"


def status_text(status: DaemonStatus, url: str) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if status.reachable and status.message:
        text.append(" ▲ daemon refuses ", style="bold black on yellow")
    elif status.reachable:
        text.append(" ● daemon ok ", style="bold green")
    elif status.reachable is None:
        text.append(" ○ connecting ", style="bold yellow")
    else:
        retry = f" (retry {status.retries})" if status.retries else ""
        text.append(f" ✖ daemon unreachable{retry} ", style="bold white on red")
    if status.drift_alarms:
        # early in the line: a long message or a narrow terminal cuts the end, not this
        text.append(" ")
        text.append(f" ▲ {drift_text(status.drift_alarms)} ", style="bold black on dark_orange")
    text.append(f" {url} ", style="dim")
    text.append("│ model ", style="dim")
    text.append(status.active_version, style="bold")
    text.append(" │ ", style="dim")
    text.append(status.job, style="cyan" if status.job != "no job" else "dim")
    text.append(" │ ", style="dim")
    new = f"{status.new_holes} new hole{'s' if status.new_holes != 1 else ''}"
    text.append(new, style="bold magenta" if status.new_holes else "dim")
    if status.message:
        text.append(f" │ {status.message}", style="red")
    return text


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "status", self._show, init=True)

    def _show(self, status: DaemonStatus) -> None:
        self.update(status_text(status, getattr(self.app, "url", "")))
