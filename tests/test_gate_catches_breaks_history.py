"""The history and lint checks fail when they should: each case breaks a temporary copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from migration_copies import add_revision, copy_migrations

from migrations.history import MANIFEST, UPDATE, manifest_problems, scripts
from migrations.lint import lint

pytestmark = pytest.mark.migrations


def test_an_edited_revision_is_reported_by_the_manifest_check(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    edited = Path(scripts(copy)[0].path)
    edited.write_text(edited.read_text().replace("title ~ '\\\\S'", "length(title) > 0"))
    [problem] = manifest_problems(copy)
    assert problem.startswith(f"{edited.name} was edited after it was recorded in {MANIFEST}"), problem
    assert f"git checkout -- migrations/versions/{edited.name}" in problem
    assert problem.endswith(f"only if it never left your machine: {UPDATE}")


def test_a_non_concurrent_create_index_on_an_existing_table_fails_the_squawk_lint(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    added = add_revision(
        copy,
        "0a1b2c3d4e5f",
        scripts(copy)[-1].revision,
        upgrade='op.create_index("ix_students_name", "students", ["name"])',
        downgrade='op.drop_index("ix_students_name", table_name="students")',
    )
    report = lint(copy)
    assert not report.passed
    assert "warning[require-concurrent-index-creation]" in report.text, report.text
    assert f"{added.stem}.sql" in report.text
    assert "CREATE INDEX ix_students_name ON students (name);" in report.text
