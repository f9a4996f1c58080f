"""What a test reads back from a database: rows, a snapshot to compare before and after, the revision."""

from __future__ import annotations

import psycopg
from sqlalchemy import URL

from migrations.catalog import catalog, contents
from migrations.database.url import conninfo


def snapshot(url: URL) -> list[str]:
    """Schema public in full, migration bookkeeping included, and every row of every table."""
    return catalog(url, excluded=()) + contents(url)


def versions(url: URL) -> list[str]:
    with psycopg.connect(conninfo(url)) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def rows(url: URL, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo(url)) as conn:
        return conn.execute(query).fetchall()


def execute(url: URL, *statements: str) -> None:
    with psycopg.connect(conninfo(url)) as conn:
        for statement in statements:
            conn.execute(statement)
