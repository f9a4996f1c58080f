"""What other sessions of a test database are doing, read from pg_stat_activity, waited for."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations.database.url import conninfo


def wait_for_sessions(
    url: URL, condition: str, parameters: tuple[Any, ...] = (), *, count: int = 1, timeout: float = 30
) -> list[int]:
    """The pids of `count` other sessions of `url`'s database matching `condition`, once there are."""
    deadline = time.monotonic() + timeout
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        f"AND pid <> pg_backend_pid() AND ({condition})"
    )
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = [int(row[0]) for row in conn.execute(query, parameters)]
            if len(found) >= count:
                return found
            time.sleep(0.01)
    raise AssertionError(
        f"no {count} session(s) of {url.database} where {condition} {parameters} within {timeout}s"
    )
