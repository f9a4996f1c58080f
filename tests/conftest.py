"""Fixtures: every test gets databases of its own on a real PostgreSQL.

With DATABASE_URL set, the URL names a server: tests create uniquely named databases on
it and drop them at the end, and never write to the database the URL names. Without it,
they use the embedded PostgreSQL (migrations/database/).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.pool import NullPool

from migrations.bookkeeping import SEED_REVISION
from migrations.database.scratch import create_database, drop_database, ensure_server_url
from tests.helpers.commands import alembic
from tests.helpers.servers import password_checking_server
from tests.helpers.types import EngineAt, MakeDatabase


@pytest.fixture(scope="session")
def server_url() -> URL:
    """A URL to a database we may connect to, but never write to, to create our own."""
    return ensure_server_url()


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


@pytest.fixture(scope="session")
def password_server() -> Iterator[URL]:
    """A server that checks passwords; its password holds the characters a URL must escape."""
    with password_checking_server(f"p@ss/w:rd%?#{uuid.uuid4().hex}") as url:
        yield url


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


@pytest.fixture(scope="session")
def seed_template(make_database: MakeDatabase) -> str:
    """A database at the seed's data migration, the revisions after it not applied."""
    url = make_database()
    alembic("upgrade", SEED_REVISION, url=url)
    assert url.database is not None
    return url.database


@pytest.fixture
def seeded_url(make_database: MakeDatabase, seed_template: str) -> URL:
    """A fresh database at the seed's data migration: its downgrade is the next step down."""
    return make_database(template=seed_template)


@pytest.fixture
def engine_at() -> Iterator[EngineAt]:
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
