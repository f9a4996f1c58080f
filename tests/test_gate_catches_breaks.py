"""The migration gate fails when it should: each break is made on a copy, never on the real files."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from catalog import MIGRATIONS, created_from, models_vs_migrations
from conftest import alembic_config
from sqlalchemy import URL, Column, MetaData, String, Text

from models import Base

pytestmark = pytest.mark.migrations


def add_nickname(models: MetaData) -> None:
    models.tables["students"].append_column(Column("nickname", Text))


def shorten_title(models: MetaData) -> None:
    models.tables["courses"].c.title.type = String(200)


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        pytest.param(add_nickname, "-column students.nickname text", id="added-column"),
        pytest.param(
            shorten_title, "-column courses.title character varying(200) NOT NULL", id="changed-type"
        ),
    ],
)
def test_catalog_equivalence_reports_a_model_change_that_has_no_migration(
    change: Callable[[MetaData], None], reported: str, server_url: URL, head_template: str, make_database
) -> None:
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    change(changed)
    diff = models_vs_migrations(
        created_from(changed, make_database()), server_url.set(database=head_template)
    )
    assert reported in diff.splitlines(), diff


def test_catalog_equivalence_reports_a_check_changed_in_a_migration_but_not_in_the_model(
    tmp_path: Path, make_database
) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    [schema_revision] = copy.glob("versions/*_students_courses_and_enrollments.py")
    source = schema_revision.read_text()
    original = r"name ~ '\\S'"  # as the revision's source spells it
    assert original in source
    schema_revision.write_text(source.replace(original, "length(name) > 0"))
    url = make_database()
    config = alembic_config(url, script_location=copy)
    command.upgrade(config, "head")

    command.check(config)  # autogenerate compares no CHECK expressions: alembic check passes
    diff = models_vs_migrations(created_from(Base.metadata, make_database()), url)
    assert (
        "+constraint students.ck_students_name_not_blank CHECK ((length(name) > 0))" in diff.splitlines()
    ), diff
