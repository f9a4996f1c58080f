"""What each revision builds: its catalog lines, from a scratch database upgraded to it.

``history.sum`` records each revision's fingerprint (catalog.fingerprint of these lines):
``python -m migrations.history update`` writes them, its ``check`` rebuilds them and compares,
and ``python -m migrations.drift`` lists how a live database differs from them. The lines leave
out the migrations' own bookkeeping tables, and are the same on PostgreSQL 15 to 18 (catalog.py
says how), so one fingerprint per revision holds on every supported version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, create_engine
from sqlalchemy.pool import NullPool

from migrations import SCRIPT_LOCATION
from migrations.catalog import catalog
from migrations.database.scratch import scratch_database


@contextmanager
def quietly_upgraded(server: URL, script_location: Path) -> Iterator[tuple[URL, Config]]:
    """A scratch database, and Alembic bound to it without alembic.ini's logging: these commands
    print what differs, not Alembic's progress."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        with scratch_database(server, prefix="fingerprint") as url:
            config.attributes["connection"] = engine = create_engine(url, poolclass=NullPool)
            yield url, config
            engine.dispose()
    finally:
        alembic_log.setLevel(level)


def built_catalogs(
    server: URL, revisions: list[str], script_location: Path = SCRIPT_LOCATION
) -> dict[str, list[str]]:
    """Each of `revisions`' catalog lines (base first), upgrading one scratch database step by step."""
    built = {}
    with quietly_upgraded(server, script_location) as (url, config):
        for revision in revisions:
            command.upgrade(config, revision)
            built[revision] = catalog(url)
    return built


def built_catalog(server: URL, revision: str, script_location: Path = SCRIPT_LOCATION) -> list[str]:
    """The catalog lines upgrading to `revision` builds."""
    with quietly_upgraded(server, script_location) as (url, config):
        command.upgrade(config, revision)
        return catalog(url)
