"""Lint: squawk finds nothing to object to in any revision's offline SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrations import SCRIPT_LOCATION
from migrations.history import scripts
from migrations.lint import lint, offline_sql
from tests.helpers.copies import add_revision, copy_migrations

pytestmark = pytest.mark.migrations

HEAD = scripts(SCRIPT_LOCATION)[-1].revision


def test_every_revision_passes_squawk_with_no_violations() -> None:
    report = lint()
    assert report.passed, report.text
    assert f"Found 0 issues in {len(scripts(SCRIPT_LOCATION))} files" in report.text


def test_each_revision_is_linted_alone_under_the_timeouts_and_transaction_env_py_emits() -> None:
    for script in scripts(SCRIPT_LOCATION):
        sql = offline_sql(SCRIPT_LOCATION, script)
        first, second = sql.split(";\n", 2)[:2]
        assert first.startswith("SET lock_timeout = "), sql
        assert second.strip().startswith("SET statement_timeout = "), sql
        assert f"-- Running upgrade {script.down_revision or ''} -> {script.revision}\n" in sql
        assert sql.count("-- Running upgrade") == 1
        assert "\nBEGIN;\n" in sql
        assert "\nCOMMIT;\n" in sql


def test_alembics_own_version_table_is_left_out_of_what_squawk_sees() -> None:
    base = scripts(SCRIPT_LOCATION)[0]
    sql = offline_sql(SCRIPT_LOCATION, base)
    assert "CREATE TABLE alembic_version" not in sql
    assert "CREATE TABLE students" in sql
    assert "INSERT INTO alembic_version" in sql


def test_a_squawk_ignore_file_comment_exempts_only_its_own_revision_from_the_named_rule(
    tmp_path: Path,
) -> None:
    copy = copy_migrations(tmp_path)
    add_revision(
        copy,
        "0a1b2c3d4e5f",
        HEAD,
        upgrade='op.execute("-- squawk-ignore-file require-concurrent-index-creation -- tiny table"); '
        'op.create_index("ix_students_name", "students", ["name"])',
        downgrade='op.drop_index("ix_students_name", table_name="students")',
    )
    assert lint(copy).passed
    unexempted = add_revision(
        copy,
        "6a7b8c9d0e1f",
        "0a1b2c3d4e5f",
        upgrade='op.create_index("ix_courses_title", "courses", ["title"])',
        downgrade='op.drop_index("ix_courses_title", table_name="courses")',
    )
    report = lint(copy)
    assert not report.passed
    assert report.text.count("warning[require-concurrent-index-creation]") == 1, report.text
    assert f"{unexempted.stem}.sql" in report.text


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
