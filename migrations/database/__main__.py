"""``python -m migrations.database url|stop``: where the database is; stop the embedded server."""

from __future__ import annotations

import sys

from migrations.database import embedded
from migrations.database.url import DatabaseUrlError, url_from_environment

USAGE = "usage: python -m migrations.database {url|stop}"


def main(argv: list[str]) -> int:
    if argv == ["stop"]:
        print(embedded.stop())
        return 0
    if argv != ["url"]:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        url = url_from_environment()
    except DatabaseUrlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if url is None:
        url, started = embedded.start(embedded.EMBEDDED_DATABASE)
        if started:
            print("started the embedded PostgreSQL", file=sys.stderr)
    print(url.render_as_string(hide_password=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
