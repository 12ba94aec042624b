"""The help screen: every key binding, read from the screens themselves (one place)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


def binding_lines(bindings: list[BindingType]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for b in bindings:
        if isinstance(b, Binding):
            key, desc = b.key_display or b.key, b.description
        else:
            key, desc = b[0], b[2] if len(b) > 2 else b[1]
        if desc:
            rows.append((key.replace(",", " / "), desc))
    return rows


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; height: 90%; border: thick $accent; background: $surface; padding: 0 2;
    }
    HelpScreen .section { text-style: bold; color: $accent; margin-top: 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close help")]

    def __init__(self, sections: list[tuple[str, list[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label("Keys (Esc closes)", classes="section")
            for title, bindings in self.sections:
                yield Label(title, classes="section")
                lines = "\n".join(f"  {k:<22} {d}" for k, d in binding_lines(bindings))
                yield Static(lines)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
