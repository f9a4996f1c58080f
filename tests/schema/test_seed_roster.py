"""The seed tutorial's roster, from the migrated seed data and from the seed's own code."""

import sys

from alembic import command
from sqlalchemy import URL, create_engine
from sqlalchemy.orm import Session

from migrations.bookkeeping import SCHEMA_REVISION
from migrations.database.scratch import alembic_config
from models.queries import roster, roster_text
from tests.helpers.commands import PROJECT, run
from tests.helpers.types import MakeDatabase

# The output the tutorial documents for its demo.
SEED_ROSTER = """\
Student: Alice
  Course: Mathematics
  Course: History
Student: Bob
  Course: Mathematics
"""


def printed_roster(url: URL) -> str:
    """The roster read back through the ORM objects, not the query the main job prints."""
    with Session(create_engine(url)) as session:
        return roster_text((s.name, [c.title for c in s.courses]) for s in roster(session))


def test_the_main_job_migrates_an_empty_database_and_prints_the_seed_roster(
    make_database: MakeDatabase,
) -> None:
    url = make_database()

    result = run([sys.executable, "-m", "migrations"], url)

    assert result.stdout == SEED_ROSTER
    assert printed_roster(url) == SEED_ROSTER


def test_the_seeds_own_demo_writes_and_prints_the_same_roster(make_database: MakeDatabase) -> None:
    url = make_database()
    command.upgrade(alembic_config(url), SCHEMA_REVISION)  # the schema, not the seed

    result = run([sys.executable, "-m", "migrations.seed_demo"], url)

    assert result.stdout == SEED_ROSTER
    assert printed_roster(url) == SEED_ROSTER


def test_the_readme_shows_the_roster_the_main_job_prints() -> None:
    assert "```\n" + SEED_ROSTER + "```" in (PROJECT / "README.md").read_text()
