"""What a user reads when something fails: one line, never a password."""

from __future__ import annotations

import sys
from types import TracebackType

from alembic.util import CommandError

INTERRUPTED = "interrupted (Ctrl-C)"


class EmbeddedServerError(CommandError):
    """The embedded PostgreSQL cannot be used; the message is one line that says what to do.

    A CommandError, so every command already reports it as it reports Alembic's own: one line.
    """


def first_line(error: BaseException | None) -> str:
    """The first line of a database error: the server's primary message when there is one."""
    diag = getattr(error, "diag", None)
    message = getattr(diag, "message_primary", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


def report_interrupts_in_one_line() -> None:
    """Ctrl-C ends the command with one line instead of a traceback.

    The process still dies of SIGINT afterwards (Python's own ending for an unhandled Ctrl-C), so
    a shell reports exit status 130 and a script running the command stops as well.
    """
    previous = sys.excepthook
    if getattr(previous, "reports_interrupts", False):
        return

    def hook(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(f"error: {INTERRUPTED}", file=sys.stderr)
            return
        previous(kind, error, traceback)

    hook.reports_interrupts = True  # type: ignore[attr-defined]
    sys.excepthook = hook
