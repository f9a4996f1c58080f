"""Databases made to be thrown away (the tests', the benchmark's), and Alembic bound to one.

With DATABASE_URL set, it names a server: scratch databases are created beside the database it
names, which is never written to. Without it, they go on the embedded server.
"""

from __future__ import annotations

import sys
import uuid
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import psycopg
from alembic.config import Config
from sqlalchemy import URL, create_engine
from sqlalchemy.pool import NullPool

from migrations import ALEMBIC_INI
from migrations.database import embedded
from migrations.database.url import conninfo, url_from_environment


def ensure_server_url() -> URL:
    """A database to connect to, never to write to, in order to create ours; starts the embedded server."""
    configured = url_from_environment()
    if configured is not None:
        return configured
    url, _ = embedded.start()
    return url


def admin(server: URL) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo(server), autocommit=True)


def create_database(server: URL, template: str | None = None, prefix: str = "test") -> URL:
    """A new database on `server` (a copy of `template` if given), uniquely named `prefix_...`."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return server.set(database=name)


def drop_database(server: URL, name: str) -> None:
    with admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(server: URL, prefix: str = "test") -> Iterator[URL]:
    """A new, empty database on `server`, dropped at the end whatever happens."""
    url = create_database(server, prefix=prefix)
    assert url.database is not None
    try:
        yield url
    finally:
        drop_database(server, url.database)


def alembic_config(
    url: URL, *x_arguments: str, script_location: Path | None = None, output_buffer: TextIO | None = None
) -> Config:
    """An in-process Alembic configuration bound to `url` (faster than a subprocess).

    env.py treats the handed-in Engine as its own: it takes the migration lock and sets the
    timeouts, as for a command-line run. `script_location` points it at a copy of migrations/;
    offline (--sql) output goes to `output_buffer`.
    """
    # stdout as it is now: Alembic's default is the one it found at import, which a test's capture is not.
    arguments = Namespace(x=list(x_arguments))
    config = Config(ALEMBIC_INI, output_buffer=output_buffer, stdout=sys.stdout, cmd_opts=arguments)
    if script_location is not None:
        config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = create_engine(url, poolclass=NullPool)
    return config
