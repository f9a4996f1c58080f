"""``python -m migrations``: migrate the database to head, then print the roster.

The database is DATABASE_URL's, or the embedded PostgreSQL when it is unset.
"""

from __future__ import annotations

import sys

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from migrations import ALEMBIC_INI
from migrations.database import ensure_database_url
from migrations.database.messages import one_line_errors, report_interrupts_in_one_line
from models.queries import iter_roster, roster_text


def main() -> int:
    report_interrupts_in_one_line()
    with one_line_errors(1):
        url = ensure_database_url()
        command.upgrade(Config(ALEMBIC_INI), "head")
        with Session(create_engine(url)) as session:
            print(roster_text(iter_roster(session)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
