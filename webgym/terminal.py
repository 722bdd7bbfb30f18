"""Text from a run or a user, made safe to print on a terminal.

A run directory is data anyone can write: an agent name, a task id, a reason quoting a file's
line may hold terminal control sequences (``ESC [ 2 J`` clears the screen, ``ESC ] 52 ; c ;
...`` writes the clipboard, ``ESC ] 8`` hides a link) or rich markup (``[bold]``, ``[link=...]``).
Every command that prints such text prints it through these helpers:

- :func:`terminal_safe` drops escape sequences (CSI, OSC, DCS/SOS/PM/APC, and the short
  two-byte ones, in their 7-bit and 8-bit forms), every other C0 and C1 control character and
  DEL, and the bidirectional overrides that reorder what a line seems to say; newline and tab
  are kept only where asked for (a name is one line);
- :func:`markup_safe` is that, with rich markup escaped: for text put inside a string that rich
  renders as markup;
- :class:`SafeConsole` is a ``rich.console.Console`` that applies :func:`terminal_safe` (newlines
  kept) to every string it renders, table cells and titles included: what a command forgets to
  clean still reaches the terminal without its control sequences (markup it cannot undo: a
  string it receives is already a mix of the command's markup and the text put into it).

The lowest layer that prints run-controlled text is the harness (``webgym_benchmarks.cli``); this
module sits in ``webgym`` so that it and the leaderboard share it. Imports only ``re`` and ``rich``.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

__all__ = ["SafeConsole", "markup_safe", "progress_bar", "terminal_safe"]

_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?            # CSI: parameters, final
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|\Z)  # OSC, DCS, SOS, PM, APC
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                                       # the other escapes
    """,
    re.VERBOSE | re.DOTALL,
)
# C0 but tab and newline, DEL, C1, and the bidi embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile("[\t\n]")


def terminal_safe(value: Any, *, newlines: bool = False) -> str:
    """``str(value)`` without terminal control sequences and control characters.

    Escape sequences are removed whole (an unterminated OSC or DCS string up to the end of the
    text); any other control character is removed. Tab and newline become a space unless
    ``newlines`` (a multi-line message): a one-line field cannot forge the lines after it.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # the common case: nothing to strip (tab and newline are not)
        return text
    text = _CONTROL.sub("", _SEQUENCE.sub("", text))
    return text if newlines else _LINE_BREAKS.sub(" ", text)


def markup_safe(value: Any, *, newlines: bool = False) -> str:
    """:func:`terminal_safe`, then rich markup escaped (``[bold]`` prints as ``[bold]``): for
    run- or user-controlled text inside a string that rich renders as markup."""
    return escape(terminal_safe(value, newlines=newlines))


class SafeConsole(Console):
    """A rich ``Console`` whose every rendered string (printed text, table cells, titles and
    captions) passes :func:`terminal_safe` with newlines kept. Styles the console itself emits
    are not affected: they are added after this point."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text, newlines=True), **kwargs)


def progress_bar(console: Console, *info: Any) -> Any:
    """The project's rich progress bar on ``console``: the task's description, the bar,
    done/total, the ``info`` columns (rich ``TextColumn``s of what each caller tracks), time
    elapsed and time left. Use it as rich's ``Progress`` (a context manager, ``add_task``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *info,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
