"""Readable messages in widgets: errors without tracebacks, small HTML tables,
what a button waits for."""

from __future__ import annotations

import html
from contextlib import contextmanager

import ipywidgets as W


def error_text(error: BaseException) -> str:
    """What a scientist reads for *error*: the message of a project error, else its type and message."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if getattr(error, "user_error", False):
        return message
    return f"{type(error).__name__}: {message}"


class FormError(ValueError):
    """A mistake in what was typed or chosen in a widget: shown as its
    message alone, which says what to give instead."""

    user_error = True


class StatusLine(W.HTML):
    """One line of state: info, success or error (CSS class ``daas-status-<level>``)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.add_class("daas-status")
        self._level = None

    def show(self, text: str, level: str = "info") -> None:
        colours = {"info": "#444", "success": "#2e7d32", "error": "#c62828", "warning": "#b26a00"}
        if self._level:
            self.remove_class(f"daas-status-{self._level}")
        self._level = level
        self.add_class(f"daas-status-{level}")
        self.value = f'<span style="color:{colours[level]}">{html.escape(text)}</span>'

    def error(self, error: BaseException | str) -> None:
        self.show(error if isinstance(error, str) else error_text(error), "error")


def table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:0 8px'>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@contextmanager
def waiting(button: W.Button, status: StatusLine, text: str):
    """A server call the kernel waits for: ``text`` on ``status`` and
    ``button`` disabled meanwhile (the kernel answers no click until the
    call returns: each would queue another call), enabled again after."""
    button.disabled = True
    status.show(text)
    try:
        yield
    finally:
        button.disabled = False
