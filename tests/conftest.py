"""Fixtures: every test gets databases of its own on a real PostgreSQL.

With DATABASE_URL set, the URL names a server: tests create uniquely named databases on
it and drop them at the end, and never write to the database the URL names. Without it,
they use the embedded PostgreSQL (models/database.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import psycopg
import pytest
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.pool import NullPool

from models.database import conninfo, database_url, embedded_server_url

PROJECT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = PROJECT / "alembic.ini"

MakeDatabase = Callable[..., URL]


@pytest.fixture(scope="session")
def server_url() -> URL:
    """A URL to a database we may connect to, but never write to, to create our own."""
    if "DATABASE_URL" in os.environ:
        return database_url()
    return embedded_server_url("postgres")


def admin(server: URL) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(conninfo(server), autocommit=True)


def create_database(server: URL, template: str | None = None) -> URL:
    name = f"test_{uuid.uuid4().hex[:16]}"
    with admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return server.set(database=name)


def drop_database(server: URL, name: str) -> None:
    with admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def make_database(server_url: URL) -> Iterator[MakeDatabase]:
    """Create an empty database (or a copy of `template`); all are dropped at session end."""
    created: list[str] = []

    def make(template: str | None = None) -> URL:
        url = create_database(server_url, template)
        assert url.database is not None
        created.append(url.database)
        return url

    yield make
    for name in created:
        drop_database(server_url, name)


def alembic_env(url: URL, **extra: str) -> dict[str, str]:
    """The environment for a subprocess that runs alembic or python against `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATION_")}
    env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    env.update(extra)
    return env


def run(
    args: list[str], url: URL, *, check: bool = True, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run a command of this project (alembic, python -m ...) against `url`."""
    completed = subprocess.run(
        args, cwd=PROJECT, env=alembic_env(url, **extra), capture_output=True, text=True, timeout=timeout
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"{args} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")
    return completed


def alembic(*args: str, url: URL, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args], url, check=check, **extra)


@pytest.fixture(scope="session")
def head_template(make_database: MakeDatabase) -> str:
    """A database migrated to head, to copy with CREATE DATABASE ... TEMPLATE."""
    url = make_database()
    alembic("upgrade", "head", url=url)
    assert url.database is not None
    return url.database


@pytest.fixture
def head_url(make_database: MakeDatabase, head_template: str) -> URL:
    """A fresh database at head, seeded."""
    return make_database(template=head_template)


@pytest.fixture
def engine_at(make_database: MakeDatabase) -> Iterator[Callable[[URL], Engine]]:
    engines: list[Engine] = []

    def make(url: URL) -> Engine:
        engine = create_engine(url, poolclass=NullPool)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


# pytest-alembic: each of its tests runs on a database of its own.
@pytest.fixture
def alembic_engine(make_database: MakeDatabase) -> Iterator[Engine]:
    engine = create_engine(make_database(), poolclass=NullPool)
    yield engine
    engine.dispose()


def alembic_config(
    url: URL, *x_arguments: str, script_location: Path | None = None, output_buffer: TextIO | None = None
) -> Config:
    """An in-process Alembic config bound to `url` (faster than a subprocess).

    env.py treats the handed-in Engine as its own: it takes the migration lock and sets
    the timeouts, as it does for a command-line run. `script_location` points it at a
    copy of migrations/; offline (--sql) output goes to `output_buffer`.
    """
    config = Config(ALEMBIC_INI, output_buffer=output_buffer, cmd_opts=Namespace(x=list(x_arguments)))
    if script_location is not None:
        config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = create_engine(url, poolclass=NullPool)
    return config


def rows(url: URL, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo(url)) as conn:
        return conn.execute(query).fetchall()


def execute(url: URL, *statements: str) -> None:
    with psycopg.connect(conninfo(url)) as conn:
        for statement in statements:
            conn.execute(statement)
