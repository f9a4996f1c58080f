"""A migration that fails or is killed part-way leaves the database at a consistent revision."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database.url import conninfo
from tests.helpers.activity import wait_for_sessions
from tests.helpers.copies import copy_project
from tests.helpers.forked_cli import run_alembic, start_alembic
from tests.helpers.snapshots import snapshot, versions

HEAD = ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_current_head()
EXTRA = "c0ffee000001"

HALFWAY_FAILURE = """
from alembic import op
import sqlalchemy as sa

def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT * FROM no_such_table")
"""

SLEEPS_AFTER_DDL = """
import os
from alembic import op
import sqlalchemy as sa

def upgrade() -> None:
    op.create_table("slept", sa.Column("id", sa.Integer, primary_key=True))
    if os.environ.get("MIGRATION_TEST_SLEEP"):
        op.execute("SELECT pg_sleep(30)")
"""


def project_with_revision(tmp_path: Path, body: str) -> Path:
    """A copy of alembic.ini and migrations/ with one more revision on top of head; its ini."""
    ini = copy_project(tmp_path)
    header = f'revision = "{EXTRA}"\ndown_revision = "{HEAD}"\nbranch_labels = None\ndepends_on = None\n'
    (tmp_path / "migrations" / "versions" / f"{EXTRA}_extra.py").write_text(header + body)
    return ini


def session_ends(url: URL, pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                return True
            time.sleep(0.05)
    return False


def test_a_revision_failing_halfway_leaves_no_partial_schema_and_the_revision_unchanged(
    head_url: URL, tmp_path: Path
) -> None:
    ini = project_with_revision(tmp_path, HALFWAY_FAILURE)
    before = snapshot(head_url)

    result = run_alembic("upgrade", "head", url=head_url, workdir=tmp_path, ini=ini)

    assert result.returncode != 0
    assert result.message == [
        'FAILED: migration failed, nothing was committed for it: relation "no_such_table" does not exist'
    ]
    assert snapshot(head_url) == before


def test_a_migrator_killed_mid_revision_leaves_a_consistent_revision_and_the_next_run_succeeds(
    head_url: URL, tmp_path: Path
) -> None:
    ini = project_with_revision(tmp_path, SLEEPS_AFTER_DDL)
    before = snapshot(head_url)
    migrator = start_alembic(
        "upgrade", "head", url=head_url, workdir=tmp_path, ini=ini, env={"MIGRATION_TEST_SLEEP": "1"}
    )
    [session] = wait_for_sessions(head_url, "state = 'active' AND strpos(query, %s) > 0", ("pg_sleep",))

    migrator.kill()

    assert migrator.finish().returncode == -signal.SIGKILL
    # The server notices the lost client within seconds, not after the 30 s sleep: its
    # transaction rolls back and the migration lock is free for the next run.
    assert session_ends(head_url, session, within=10)
    assert snapshot(head_url) == before
    assert run_alembic("upgrade", "head", url=head_url, workdir=tmp_path, ini=ini).returncode == 0
    assert versions(head_url) == [EXTRA]
