"""Which PostgreSQL every command talks to: DATABASE_URL's, or else the embedded one.

- ``url.py``: DATABASE_URL read and checked, with no server involved; URLs shown without passwords.
- ``embedded.py``: the embedded server's lifecycle (initialize, start, prove it ours, stop, delete).
- ``server_user.py``: which OS user runs it, and how that user reaches the checkout.
- ``processes.py``: its processes, found through /proc rather than its pid file.
- ``scratch.py``: databases created and dropped for the tests and the benchmark, and an
  in-process Alembic configuration bound to one.
- ``messages.py``: a failure, or Ctrl-C, as the one line a user reads.
- ``python -m migrations.database url|stop|delete``: where the database is; stop or delete the
  embedded server.
"""

from __future__ import annotations

from sqlalchemy import URL

from migrations.database import embedded
from migrations.database.url import url_from_environment


def ensure_database_url() -> URL:
    """DATABASE_URL's database; without it, the embedded server's, which this starts if it is down."""
    configured = url_from_environment()
    if configured is not None:
        return configured
    url, _ = embedded.start(embedded.EMBEDDED_DATABASE)
    return url
