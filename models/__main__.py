"""Migrate the database to head and print the roster: ``python -m models``.

The database is DATABASE_URL's, or the embedded PostgreSQL when it is unset.
"""

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from models.access import iter_roster, roster_text
from models.database import DatabaseUrlError, database_url

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def main() -> int:
    try:
        url = database_url()
        command.upgrade(Config(ALEMBIC_INI), "head")
        with Session(create_engine(url)) as session:
            print(roster_text(iter_roster(session)), end="")
    except (CommandError, DatabaseUrlError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except DBAPIError as error:
        print(f"error: {str(error.orig).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
