"""``python -m migrations.drift``: a database's schema against its revision's fingerprint, read-only."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.database.scratch import admin
from migrations.drift import drift
from migrations.history import MANIFEST, read_manifest
from tests.helpers.drift import BY_HAND, INDEX_LINE, run_drift
from tests.helpers.snapshots import execute

pytestmark = pytest.mark.migrations

HEAD = read_manifest(SCRIPT_LOCATION)[-1].revision


def test_a_database_at_its_revision_has_no_drift(head_url: URL, server_url: URL, tmp_path: Path) -> None:
    result = run_drift(head_url, tmp_path, server_url)
    assert result.returncode == 0, result.output
    assert result.stdout.startswith(
        f"no drift: {head_url.render_as_string(hide_password=True)} has exactly the "
    )
    assert f"schema revision {HEAD} builds" in result.stdout


@pytest.mark.parametrize(
    ("change", "added", "missing"),
    [
        pytest.param(BY_HAND, [INDEX_LINE], [], id="an index created by hand"),
        pytest.param(
            "ALTER TABLE courses DROP CONSTRAINT ck_courses_title_not_blank",
            [],
            ["constraint courses.ck_courses_title_not_blank CHECK ((title ~ '\\S'::text))"],
            id="a dropped constraint",
        ),
        pytest.param(
            "ALTER TABLE students ALTER COLUMN name SET DEFAULT 'anonymous'",
            ["column students.name text NOT NULL DEFAULT 'anonymous'::text"],
            ["column students.name text NOT NULL"],
            id="an altered default",
        ),
    ],
)
def test_each_change_made_outside_the_migrations_is_listed(
    head_url: URL, server_url: URL, change: str, added: list[str], missing: list[str]
) -> None:
    execute(head_url, change)
    found = drift(head_url, scratch=server_url)
    assert found.drifted
    assert (found.revision, found.added, found.missing) == (HEAD, added, missing)


def test_the_command_lists_the_drift_and_exits_1(head_url: URL, server_url: URL, tmp_path: Path) -> None:
    execute(head_url, BY_HAND)
    result = run_drift(head_url, tmp_path, server_url)
    assert result.returncode == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"drift: {head_url.render_as_string(hide_password=True)} differs from what ")
    assert lines[1:] == [f"+ {INDEX_LINE}    (in the database only)"]


def test_a_revision_this_checkout_does_not_know_gets_one_line_and_exit_2(
    head_url: URL, server_url: URL, tmp_path: Path
) -> None:
    result = run_drift(head_url, tmp_path, server_url, "--revision", "0000deadbeef")
    assert result.returncode == 2
    assert result.message == [
        f"error: revision 0000deadbeef is not in {MANIFEST}: this checkout does not know it"
    ]


@pytest.fixture
def catalog_reader(head_url: URL) -> Iterator[Callable[[bool], URL]]:
    """A role that may log in and read the catalog, nothing else (optionally alembic_version too)."""
    role, password = f"drift_reader_{secrets.token_hex(4)}", secrets.token_hex(8)
    with admin(head_url) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")

    def reader(may_read_version: bool) -> URL:
        if may_read_version:
            execute(head_url, f"GRANT SELECT ON alembic_version TO {role}")
        return head_url.set(username=role, password=password)

    yield reader
    with admin(head_url) as conn:
        conn.execute(f"REVOKE ALL ON alembic_version FROM {role}")
    with admin(head_url.set(database="postgres")) as conn:
        conn.execute(f"DROP ROLE {role}")


def test_a_role_that_reads_only_the_catalog_checks_with_the_revision_given(
    catalog_reader: Callable[[bool], URL], server_url: URL, tmp_path: Path
) -> None:
    url = catalog_reader(False)
    refused = run_drift(url, tmp_path, server_url)
    assert refused.returncode == 2
    assert refused.message == [
        f"error: {url.username} may not read alembic_version: pass --revision, or GRANT SELECT ON "
        "alembic_version to it"
    ]
    checked = run_drift(url, tmp_path, server_url, "--revision", HEAD)
    assert checked.returncode == 0, checked.output
    assert str(url.password) not in checked.output + refused.output


def test_a_role_that_may_also_read_alembic_version_finds_the_revision_itself(
    catalog_reader: Callable[[bool], URL], server_url: URL, tmp_path: Path
) -> None:
    result = run_drift(catalog_reader(True), tmp_path, server_url)
    assert result.returncode == 0, result.output
