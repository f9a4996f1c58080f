"""Check 1: the schema `alembic upgrade head` builds is the schema the models declare.

`alembic check` compares only what autogenerate can see; this compares PostgreSQL's own
catalog, so a CHECK expression, an ON DELETE rule, an index definition or identity
options that differ are caught too. The cases below it break copies, never the real files,
to show the check fails when it should.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import URL, Column, MetaData, String, Text

from migrations.catalog import catalog, created_from, models_vs_migrations
from migrations.database.scratch import alembic_config
from models import metadata
from tests.helpers.copies import copy_migrations
from tests.helpers.types import MakeDatabase

pytestmark = pytest.mark.migrations


def test_upgrade_head_builds_exactly_the_catalog_the_models_declare(
    server_url: URL, head_template: str, make_database: MakeDatabase
) -> None:
    migrated = server_url.set(database=head_template)
    assert catalog(migrated), "the snapshot queries found nothing at head"
    diff = models_vs_migrations(created_from(metadata, make_database()), migrated)
    assert not diff, f"migrations and models disagree:\n{diff}"


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
    change: Callable[[MetaData], None],
    reported: str,
    server_url: URL,
    head_template: str,
    make_database: MakeDatabase,
) -> None:
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    change(changed)
    diff = models_vs_migrations(
        created_from(changed, make_database()), server_url.set(database=head_template)
    )
    assert reported in diff.splitlines(), diff


def test_catalog_equivalence_reports_a_check_changed_in_a_migration_but_not_in_the_model(
    tmp_path: Path, make_database: MakeDatabase
) -> None:
    copy = copy_migrations(tmp_path)
    [schema_revision] = copy.glob("versions/*_students_courses_and_enrollments.py")
    source = schema_revision.read_text()
    original = r"name ~ '\\S'"  # as the revision's source spells it
    assert original in source
    schema_revision.write_text(source.replace(original, "length(name) > 0"))
    url = make_database()
    config = alembic_config(url, script_location=copy)
    command.upgrade(config, "head")

    command.check(config)  # autogenerate compares no CHECK expressions: alembic check passes
    diff = models_vs_migrations(created_from(metadata, make_database()), url)
    assert (
        "+constraint students.ck_students_name_not_blank CHECK ((length(name) > 0))" in diff.splitlines()
    ), diff
