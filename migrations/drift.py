"""``python -m migrations.drift``: is this database's schema exactly what its revision builds?

Checks the database DATABASE_URL names (or the embedded one), production included, and never
writes to it: every read runs in a read-only transaction, so it works on a standby, and under a
role that may read nothing but the catalog (give such a role ``--revision``, or SELECT on
``alembic_version`` alone). It reads the revision in ``alembic_version``, the schema's catalog
lines (migrations/catalog.py), and compares their fingerprint with the one ``history.sum``
records for that revision. On a difference, it builds what the revision builds on a scratch
database, on MIGRATION_SCRATCH_URL's server or else the embedded PostgreSQL, never on the
database it checks, and lists every line that differs.

Exit status: 0 the schema matches, 1 it drifted, 2 it could not be checked.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import psycopg
from alembic.util import CommandError
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.catalog import catalog, fingerprint
from migrations.database import embedded, ensure_database_url
from migrations.database.messages import OneLineArgumentParser, one_line_errors
from migrations.database.url import conninfo, parse_database_url
from migrations.fingerprints import built_catalog
from migrations.history import MANIFEST, UPDATE, read_manifest

SCRATCH_VAR = "MIGRATION_SCRATCH_URL"
READ_ONLY = "-c default_transaction_read_only=on"


@dataclass(frozen=True)
class Drift:
    revision: str
    recorded: str
    found: str
    added: list[str]  # in the database, not built by the revision
    missing: list[str]  # built by the revision, not in the database

    @property
    def drifted(self) -> bool:
        return self.recorded != self.found


def read_only(url: URL) -> URL:
    options = " ".join(filter(None, (str(url.query.get("options", "")), READ_ONLY)))
    return url.update_query_dict({"options": options})


def current_revision(url: URL) -> str:
    with psycopg.connect(conninfo(url)) as conn:
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            raise CommandError(
                f"{url.username or 'this role'} may not read alembic_version: pass --revision, "
                "or GRANT SELECT ON alembic_version to it"
            ) from None
        except psycopg.errors.UndefinedTable:
            raise CommandError("this database has no alembic_version: no revision was ever applied") from None
    if len(rows) != 1:
        raise CommandError(f"alembic_version holds {len(rows)} revisions, not one")
    return str(rows[0][0])


def scratch_server() -> URL:
    configured = os.environ.get(SCRATCH_VAR)
    if configured is not None:
        return parse_database_url(configured)
    url, _ = embedded.start()
    return url


def drift(url: URL, revision: str | None = None, scratch: URL | None = None) -> Drift:
    """How the schema of the database at `url` differs from what its revision builds; reads only."""
    url = read_only(url)
    revision = revision or current_revision(url)
    recorded = {entry.revision: entry.fingerprint for entry in read_manifest(SCRIPT_LOCATION)}
    if revision not in recorded:
        raise CommandError(f"revision {revision} is not in {MANIFEST}: this checkout does not know it")
    if not recorded[revision]:
        raise CommandError(f"{MANIFEST} records no fingerprint for revision {revision}; run: {UPDATE}")
    lines = catalog(url)
    found = fingerprint(lines)
    if found == recorded[revision]:
        return Drift(revision, recorded[revision], found, [], [])
    expected = built_catalog(scratch or scratch_server(), revision)
    return Drift(
        revision,
        recorded[revision],
        found,
        added=sorted(set(lines) - set(expected)),
        missing=sorted(set(expected) - set(lines)),
    )


def report(where: str, found: Drift) -> str:
    if not found.drifted:
        return (
            f"no drift: {where} has exactly the schema revision {found.revision} builds ({found.found[:12]})"
        )
    lines = [
        f"drift: {where} differs from what revision {found.revision} builds "
        f"(fingerprint {found.recorded[:12]}, found {found.found[:12]}):",
        *(f"+ {line}    (in the database only)" for line in found.added),
        *(f"- {line}    (built by {found.revision}, missing from the database)" for line in found.missing),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = OneLineArgumentParser(prog="python -m migrations.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--revision", help="the revision to compare with, instead of alembic_version's")
    args = parser.parse_args(argv)
    with one_line_errors(status=2):
        url = ensure_database_url()
        found = drift(url, args.revision)
    print(report(url.render_as_string(hide_password=True), found))
    return 1 if found.drifted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
