"""Small modal questions: confirm, a typed reason, a pick from a list, starting a daemon, the
operator's name."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option

# Unscoped (SCOPED_CSS = False in each dialog): scoped, Textual would prefix every rule with
# the dialog's own name ("ConfirmScreen ModalScreen ..."), which matches nothing, and the
# dialogs came out uncentred, unframed, with long questions cut at the terminal's edge.
DIALOG_CSS = """
ModalScreen { align: center middle; }
ModalScreen > Vertical {
    width: 72; height: auto; padding: 1 2; border: thick $accent; background: $surface;
}
ModalScreen Horizontal { height: auto; margin-top: 1; }
ModalScreen Button { margin-right: 2; }
ModalScreen Label { width: 100%; }
ModalScreen .error { color: $error; }
ModalScreen OptionList { height: auto; max-height: 16; margin-top: 1; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no before anything that changes which model serves."""

    DEFAULT_CSS = DIALOG_CSS
    SCOPED_CSS = False
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question")
            with Horizontal():
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ReasonScreen(ModalScreen[str | None]):
    """A typed reason (forcing past a failed gate must say why: it is audited)."""

    DEFAULT_CSS = DIALOG_CSS
    SCOPED_CSS = False
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, placeholder: str = "reason") -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(placeholder=self.placeholder, id="reason")
            yield Label("", id="problem", classes="error")
            yield Label("Enter to confirm, Esc to cancel", classes="dim")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if len(value) < 3:
            self.query_one("#problem", Label).update("type a reason (at least 3 characters)")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickScreen(ModalScreen[str | None]):
    """One of a few choices, each (what is shown, the value it answers); Esc answers None."""

    DEFAULT_CSS = DIALOG_CSS
    SCOPED_CSS = False
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[Text, str]],
                 current: str | None = None) -> None:
        super().__init__()
        self.question = question
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield OptionList(*(Option(shown) for shown, _ in self.choices))
            yield Label("Enter to choose, Esc to cancel", classes="dim")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        values = [value for _, value in self.choices]
        if self.current in values:
            options.highlighted = values.index(self.current)
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index][1])

    def action_cancel(self) -> None:
        self.dismiss(None)


class StartDaemonScreen(ModalScreen[str]):
    """No daemon answers: start one on the default home, keep retrying, or quit."""

    DEFAULT_CSS = DIALOG_CSS
    SCOPED_CSS = False
    BINDINGS = [
        Binding("s", "choose('start')", "Start daemon"),
        Binding("r,escape", "choose('retry')", "Keep retrying"),
        Binding("q", "choose('quit')", "Quit"),
    ]

    def __init__(self, url: str, home: str, reason: str) -> None:
        super().__init__()
        self.url, self.home, self.reason = url, home, reason

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"No daemon answers at {self.url}.", id="question")
            yield Label(self.reason, classes="error")
            yield Label(f"Start one on the default home ({self.home})?")
            with Horizontal():
                yield Button("Start (s)", variant="primary", id="start")
                yield Button("Keep retrying (r)", id="retry")
                yield Button("Quit (q)", id="quit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


class OperatorScreen(ModalScreen[str | None]):
    """Who is confirming labels: stored in the settings file."""

    DEFAULT_CSS = DIALOG_CSS
    SCOPED_CSS = False
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Operator name (stored with every label you confirm):")
            yield Input(value=self.current, id="operator")
            yield Label("", id="problem", classes="error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            self.query_one("#problem", Label).update("the name cannot be empty")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
