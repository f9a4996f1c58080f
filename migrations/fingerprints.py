"""What each revision builds: its catalog lines, from a scratch database upgraded to it.

``history.sum`` records each revision's fingerprint (catalog.fingerprint of these lines):
``python -m migrations.history update`` writes them, its ``check`` rebuilds them and compares,
and ``python -m migrations.drift`` lists how a live database differs from them. The lines leave
out the migrations' own bookkeeping tables, and are the same on PostgreSQL 15 to 18 (catalog.py
says how), so one fingerprint per revision holds on every supported version.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.catalog import catalog
from migrations.database.scratch import alembic_config, scratch_database


def built_catalogs(
    server: URL, revisions: list[str], script_location: Path = SCRIPT_LOCATION
) -> dict[str, list[str]]:
    """Each of `revisions`' catalog lines (base first), upgrading one scratch database step by step."""
    built = {}
    with scratch_database(server, prefix="fingerprint") as url:
        config = alembic_config(url, script_location=script_location)
        for revision in revisions:
            command.upgrade(config, revision)
            built[revision] = catalog(url)
    return built


def built_catalog(server: URL, revision: str, script_location: Path = SCRIPT_LOCATION) -> list[str]:
    """The catalog lines upgrading to `revision` builds."""
    with scratch_database(server, prefix="fingerprint") as url:
        command.upgrade(alembic_config(url, script_location=script_location), revision)
        return catalog(url)
