"""Check 2: every revision's downgrade undoes exactly what its upgrade did.

pytest-alembic's up/down tests only see that each step runs; here PostgreSQL's catalog
and every row are compared before an upgrade and after the downgrade that follows it,
so a downgrade that forgets an index, a constraint or a seeded row fails.
"""

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from migrations.catalog import catalog, contents, difference
from migrations.database.scratch import alembic_config
from tests.helpers.types import MakeDatabase

pytestmark = pytest.mark.migrations

# alembic_version stays once created, even at base; its rows (the revision) still count.
VERSION_TABLE = {"alembic_version"}


def test_each_revision_upgraded_then_downgraded_leaves_the_catalog_and_rows_it_found(
    make_database: MakeDatabase,
) -> None:
    url = make_database()
    config = alembic_config(url)
    revisions = [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()]
    assert revisions, "no revisions found"
    for revision in reversed(revisions):
        before = catalog(url, VERSION_TABLE) + contents(url)
        command.upgrade(config, revision)
        command.downgrade(config, "-1")
        diff = difference(before, catalog(url, VERSION_TABLE) + contents(url), "before", "after down")
        assert not diff, f"upgrading to {revision} and downgrading again changed the database:\n{diff}"
        command.upgrade(config, revision)


def test_upgrade_to_head_then_downgrade_to_base_leaves_nothing_but_an_empty_alembic_version(
    make_database: MakeDatabase,
) -> None:
    url = make_database()
    config = alembic_config(url)
    command.upgrade(config, "head")
    assert contents(url, VERSION_TABLE), "upgrade head added no rows: nothing to see removed"
    command.downgrade(config, "base")
    assert catalog(url, VERSION_TABLE) == []
    assert contents(url) == []
