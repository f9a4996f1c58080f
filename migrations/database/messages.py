"""What a user reads when something fails: one line, never a password."""

from __future__ import annotations

import argparse
from typing import NoReturn


def first_line(error: BaseException | None) -> str:
    """The first line of a database error: the server's primary message when there is one."""
    diag = getattr(error, "diag", None)
    message = getattr(diag, "message_primary", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, whose complaint about the command line is one line (``error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
