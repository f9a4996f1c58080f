"""Each revision's schema fingerprint in history.sum: recorded, and rebuilt by the history check.

Both legs of the suite (PostgreSQL 15 on DATABASE_URL, 18 embedded) check the same recorded
fingerprints, which is what shows they are the same on both versions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.history import (
    MANIFEST,
    UPDATE,
    built_fingerprints,
    fingerprint_problems,
    read_manifest,
    write_manifest,
)
from tests.helpers.copies import add_revision, copy_migrations

pytestmark = pytest.mark.migrations

HEAD = read_manifest(SCRIPT_LOCATION)[-1].revision


def test_every_revision_builds_the_schema_whose_fingerprint_history_sum_records(server_url: URL) -> None:
    recorded = read_manifest(SCRIPT_LOCATION)
    assert all(len(entry.fingerprint) == 64 for entry in recorded), "run: " + UPDATE
    assert fingerprint_problems(SCRIPT_LOCATION, server_url) == []


def test_a_revision_that_builds_another_schema_than_recorded_fails_the_check_though_its_file_is_unchanged(
    server_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = copy_migrations(tmp_path)
    # What it builds depends on something outside its file, as when a helper it calls changes.
    added = add_revision(
        copy,
        "f1a9e0000001",
        HEAD,
        upgrade="op.execute(f\"CREATE INDEX ix_students_x ON students ({os.environ['INDEXED_COLUMN']})\")",
        downgrade="op.execute('DROP INDEX ix_students_x')",
        preamble="import os",
    )
    monkeypatch.setenv("INDEXED_COLUMN", "name")
    write_manifest(copy, built_fingerprints(copy, server_url))
    assert fingerprint_problems(copy, server_url) == []

    monkeypatch.setenv("INDEXED_COLUMN", "id")
    [problem] = fingerprint_problems(copy, server_url)
    assert problem.startswith(
        f"{added.name} (revision f1a9e0000001) no longer builds the schema recorded in {MANIFEST}"
    )


def test_a_manifest_recorded_without_fingerprints_is_told_to_record_them(
    server_url: URL, tmp_path: Path
) -> None:
    copy = copy_migrations(tmp_path)
    write_manifest(copy)
    first = read_manifest(copy)[0]
    assert fingerprint_problems(copy, server_url)[0] == (
        f"{first.file} (revision {first.revision}) has no schema fingerprint in {MANIFEST}; "
        f"record it: {UPDATE}"
    )
