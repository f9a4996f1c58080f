"""``python -m migrations.database url|stop|delete``: where the database is; stop or delete the embedded."""

from __future__ import annotations

import sys

from alembic.util import CommandError
from sqlalchemy import URL

from migrations.database import embedded
from migrations.database.messages import report_interrupts_in_one_line
from migrations.database.url import DatabaseUrlError, shown, url_from_environment

USAGE = "usage: python -m migrations.database {url|stop|delete}"


def main(argv: list[str]) -> int:
    report_interrupts_in_one_line()
    commands = {"url": url, "stop": embedded.stop, "delete": embedded.delete}
    if len(argv) != 1 or argv[0] not in commands:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        print(commands[argv[0]]())
    except (CommandError, DatabaseUrlError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def url() -> str:
    """DATABASE_URL, or the embedded server's URL (started if it is down), as psql and we accept it."""
    configured = url_from_environment()
    if configured is not None:
        return shown(configured.set(drivername="postgresql"))
    _, started = embedded.start(embedded.EMBEDDED_DATABASE)
    if started:
        print("started the embedded PostgreSQL", file=sys.stderr)
    socket = {"host": str(embedded.EMBEDDED_DIR), "port": str(embedded.PORT)}
    return shown(URL.create("postgresql", "postgres", database=embedded.EMBEDDED_DATABASE, query=socket))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
