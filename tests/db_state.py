"""What a reliability test compares before and after a failed or refused migration."""

from __future__ import annotations

import psycopg
from catalog import catalog, contents
from sqlalchemy import URL

from models.database import conninfo

# env.py's MIGRATION_LOCK_KEY: the bytes of "migrate!" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"migrate!", "big")


def snapshot(url: URL) -> list[str]:
    """Schema public in full, migration bookkeeping included, and every row of every table."""
    return catalog(url, excluded=()) + contents(url)


def versions(url: URL) -> list[str]:
    with psycopg.connect(conninfo(url)) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
