"""A downgrade is one transaction, whatever form its destination takes.

Written against a synthetic history of throwaway revisions in a copy of migrations/, so that
it holds however many real revisions there are, and whatever they do: each step drops a table
of its own, and the last step refuses, so any step committed before it would show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import URL

from tests.helpers.copies import add_revision, copy_project
from tests.helpers.forked_cli import run_alembic
from tests.helpers.snapshots import execute, snapshot, versions
from tests.helpers.types import MakeDatabase

# Four revisions in one line; only ids the tests name, so no real revision is involved.
CHAIN = ["1a0000000000", "2b0000000000", "3c0000000000", "4d0000000000"]
REFUSALS = "CREATE TABLE downgrade_refusals (revision text PRIMARY KEY)"


def refusing_downgrade(revision: str) -> str:
    """Drop this revision's table, then refuse if the test asked this revision to refuse."""
    return (
        f'op.drop_table("step_{revision}"); op.execute("DO $$ BEGIN IF EXISTS (SELECT FROM '
        f"downgrade_refusals WHERE revision = '{revision}') THEN RAISE EXCEPTION "
        f"'{revision} refuses'; END IF; END $$\")"
    )


@pytest.fixture
def synthetic_ini(tmp_path: Path) -> Path:
    """A copy of alembic.ini and migrations/ whose versions/ holds only CHAIN; its ini."""
    ini = copy_project(tmp_path)
    copy = ini.parent / "migrations"
    for real in (copy / "versions").glob("*.py"):
        real.unlink()
    for down_revision, revision in zip([None, *CHAIN], CHAIN, strict=False):
        add_revision(
            copy,
            revision,
            down_revision,
            upgrade=f'op.execute("CREATE TABLE step_{revision} (id int)")',
            downgrade=refusing_downgrade(revision),
        )
    return ini


@pytest.mark.parametrize(
    ("destination", "reaches"),
    [
        ("-2", CHAIN[1]),
        ("head-2", CHAIN[1]),
        (f"{CHAIN[3]}-2", CHAIN[1]),
        (f"{CHAIN[0]}+1", CHAIN[1]),
        (CHAIN[1][:4], CHAIN[1]),
        ("base", None),
    ],
    ids=["-N", "head-N", "<rev>-N", "<rev>+N", "partial id", "base"],
)
def test_a_downgrade_refused_in_its_last_step_changes_nothing_whatever_the_destinations_form(
    destination: str, reaches: str | None, make_database: MakeDatabase, synthetic_ini: Path, tmp_path: Path
) -> None:
    url: URL = make_database()
    last_step = CHAIN[CHAIN.index(reaches) + 1 if reaches else 0]
    execute(url, REFUSALS, f"INSERT INTO downgrade_refusals VALUES ('{last_step}')")
    assert run_alembic("upgrade", "head", url=url, workdir=tmp_path, ini=synthetic_ini).returncode == 0
    before = snapshot(url)

    refused = run_alembic("downgrade", destination, url=url, workdir=tmp_path, ini=synthetic_ini)

    assert refused.returncode != 0
    assert refused.message == [f"FAILED: migration failed, nothing was committed for it: {last_step} refuses"]
    assert refused.stderr.count("Running downgrade") > 1, "the earlier steps ran, in the same transaction"
    assert snapshot(url) == before

    # Once nothing refuses, the same command reaches the destination it names.
    execute(url, "DELETE FROM downgrade_refusals")
    done = run_alembic("downgrade", destination, url=url, workdir=tmp_path, ini=synthetic_ini)
    assert done.returncode == 0, done.output
    assert versions(url) == ([reaches] if reaches else [])
