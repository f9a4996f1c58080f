"""What a user reads when something fails: one line, never a password."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import NoReturn

import psycopg
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError

from migrations.database.url import DatabaseUrlError

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


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, whose complaint about the command line is one line (``error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


@contextmanager
def one_line_errors(status: int) -> Iterator[None]:
    """What a command expects to go wrong (a bad setting, a database that is unreachable or refuses)
    as one ``error:`` line on stderr and exit status `status`; anything else keeps its traceback."""
    try:
        yield
    except (CommandError, DatabaseUrlError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(status) from None
    except (DBAPIError, psycopg.Error) as error:
        print(f"error: {first_line(getattr(error, 'orig', None) or error)}", file=sys.stderr)
        raise SystemExit(status) from None
