"""Each helper in migrations/operations.py keeps the application's reads and writes going, where the form
autogenerate writes blocks them: shown with a throwaway revision on a populated copy, both ways.

The application is a probe session with a short lock_timeout that writes to ``student_course``
while the migrator works; with the naive form the same probe is blocked, which shows each test
can fail.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database.url import conninfo
from tests.helpers.activity import wait_for_sessions
from tests.helpers.copies import add_revision, copy_project
from tests.helpers.forked_cli import Running, start_alembic
from tests.helpers.snapshots import rows

HEAD = ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_current_head()
THROWAWAY = "5afe00000001"
ENROLLMENTS = 20_000
IMPORTS = "from migrations.operations import *  # noqa: F403\n"


@pytest.fixture
def populated_url(head_url: URL) -> URL:
    """The database at head, with ENROLLMENTS more enrollments (4,000 students in 5 courses each)."""
    with psycopg.connect(conninfo(head_url)) as conn:
        conn.execute("INSERT INTO students (name) SELECT 'student ' || n FROM generate_series(1, 4000) n")
        conn.execute("INSERT INTO courses (title) SELECT 'course ' || n FROM generate_series(1, 5) n")
        conn.execute(
            "INSERT INTO student_course (student_id, course_id) "
            "SELECT s.id, c.id FROM students s, courses c "
            "WHERE s.name LIKE 'student %' AND c.title LIKE 'course %'"
        )
        conn.execute(
            # pg_sleep sleeps a millisecond at least: for one row in ten, so 2,000 ms per scan.
            "CREATE FUNCTION slowly_true(bigint) RETURNS boolean LANGUAGE sql IMMUTABLE "
            "AS 'SELECT true FROM pg_sleep(CASE WHEN $1 % 10 = 0 THEN 0.001 ELSE 0 END)'"
        )
    with psycopg.connect(conninfo(head_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE student_course")
    return head_url


def migrator(tmp_path: Path, url: URL, upgrade: str, **env: str) -> Running:
    """`alembic upgrade head` on a copy whose head is a throwaway revision doing `upgrade`."""
    ini = copy_project(tmp_path)
    add_revision(tmp_path / "migrations", THROWAWAY, HEAD, upgrade=upgrade, preamble=IMPORTS)
    return start_alembic("upgrade", "head", url=url, workdir=tmp_path, ini=ini, env=env)


def wait_for_migrator(url: URL, *, running: str = "", waiting: bool = False) -> None:
    """Until the migrator's current statement contains `running`, and (if `waiting`) waits for a lock."""
    wait_for_sessions(
        url,
        "application_name = 'alembic: migrating' AND state = 'active' AND strpos(query, %s) > 0 "
        "AND (NOT %s OR wait_event_type = 'Lock')",
        (running, waiting),
    )


def probe_writes(url: URL) -> bool:
    """Whether the application can enroll someone now, waiting at most 300 ms for a lock."""
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("SET lock_timeout = '300ms'")
        try:
            conn.execute(
                "INSERT INTO student_course (student_id, course_id) "
                "SELECT max(s.id), min(c.id) FROM students s, courses c ON CONFLICT DO NOTHING"
            )
        except psycopg.errors.LockNotAvailable:
            return False
        conn.rollback()
        return True


@pytest.fixture
def old_transaction(populated_url: URL) -> Iterator[psycopg.Connection[Any]]:
    """An application transaction that wrote to student_course and is still open."""
    with psycopg.connect(conninfo(populated_url)) as conn:
        conn.execute("DELETE FROM student_course WHERE student_id = (SELECT min(id) FROM students)")
        yield conn
        conn.rollback()


INDEX = "ix_student_course_enrolled_at"
INDEX_CHANGES = {
    "create index concurrently": (
        f'create_index_concurrently("{INDEX}", "student_course", ["enrolled_at"])',
        True,
    ),
    "create index (autogenerate)": (
        f'op.create_index("{INDEX}", "student_course", ["enrolled_at"])',
        False,
    ),
    "drop index concurrently": (
        'drop_index_concurrently("ix_student_course_course_id_enrolled_at_student_id")',
        True,
    ),
    "drop index (autogenerate)": (
        'op.drop_index("ix_student_course_course_id_enrolled_at_student_id", table_name="student_course")',
        False,
    ),
}


@pytest.mark.parametrize(("upgrade", "writes_go_on"), INDEX_CHANGES.values(), ids=INDEX_CHANGES)
def test_an_index_change_waiting_for_an_old_transaction_lets_writes_go_on_only_when_concurrent(
    upgrade: str,
    writes_go_on: bool,
    populated_url: URL,
    old_transaction: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    running = migrator(tmp_path, populated_url, upgrade)
    wait_for_migrator(populated_url, running="INDEX", waiting=True)

    assert probe_writes(populated_url) is writes_go_on
    old_transaction.rollback()
    assert running.finish().returncode == 0


CHECKS = {
    "add_check_constraint (NOT VALID, then VALIDATE)": (
        'add_check_constraint("ck_slow", "student_course", "slowly_true(student_id)")',
        "VALIDATE",
        True,
    ),
    "create_check_constraint (autogenerate)": (
        'op.create_check_constraint("ck_slow", "student_course", "slowly_true(student_id)")',
        "ADD CONSTRAINT",
        False,
    ),
}


@pytest.mark.parametrize(("upgrade", "scanning", "writes_go_on"), CHECKS.values(), ids=CHECKS)
def test_a_check_constraint_scans_the_table_without_blocking_writes_only_when_validated_apart(
    upgrade: str, scanning: str, writes_go_on: bool, populated_url: URL, tmp_path: Path
) -> None:
    running = migrator(tmp_path, populated_url, upgrade)
    wait_for_migrator(populated_url, running=scanning)  # two seconds of scanning

    assert probe_writes(populated_url) is writes_go_on
    assert running.finish().returncode == 0
    assert rows(populated_url, "SELECT convalidated FROM pg_constraint WHERE conname LIKE '%ck_slow'") == [
        (True,)
    ]


@pytest.mark.parametrize(
    ("upgrade", "skips_the_scan"),
    [
        ('set_not_null("student_course", "enrolled_at")', True),
        ('op.alter_column("student_course", "enrolled_at", nullable=False)', False),
    ],
    ids=["set_not_null (validated CHECK first)", "alter_column nullable=False (autogenerate)"],
)
def test_set_not_null_is_proved_by_a_validated_check_so_postgresql_skips_its_scan(
    upgrade: str, skips_the_scan: bool, populated_url: URL, tmp_path: Path
) -> None:
    with psycopg.connect(conninfo(populated_url)) as conn:
        conn.execute("UPDATE student_course SET enrolled_at = 'epoch' WHERE enrolled_at IS NULL")
        # PostgreSQL says when it skips the scan, at DEBUG1; the migrator logs what the server says.
        conn.execute(f'ALTER DATABASE "{populated_url.database}" SET client_min_messages = debug1')

    result = migrator(tmp_path, populated_url, upgrade).finish()

    assert result.returncode == 0, result.output
    skipped = 'existing constraints on column "student_course.enrolled_at" are sufficient to prove'
    assert (skipped in result.stderr) is skips_the_scan, result.stderr
    assert rows(
        populated_url,
        "SELECT attnotnull FROM pg_attribute "
        "WHERE attrelid = 'student_course'::regclass AND attname = 'enrolled_at'",
    ) == [(True,)]
    assert rows(populated_url, "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'ck_%not_null'") == [
        (0,)
    ]


# Its condition names a key column too, which the batches select as well: it must not be ambiguous.
BACKFILL = (
    'backfill("student_course", "enrolled_at = \'epoch\'", "enrolled_at IS NULL AND course_id > 0", '
    'name="epoch", key=["student_id", "course_id"], batch_size=500, pause={pause})'
)


def test_a_batched_backfill_holds_row_locks_one_batch_at_a_time_where_one_update_holds_them_all(
    populated_url: URL, tmp_path: Path
) -> None:
    def is_writable(row: str) -> bool:
        with psycopg.connect(conninfo(populated_url)) as conn:
            conn.execute("SET lock_timeout = '300ms'")
            try:
                conn.execute(f"UPDATE student_course SET course_id = course_id WHERE ctid = ({row})")
            except psycopg.errors.LockNotAvailable:
                return False
            conn.rollback()
            return True

    # The first row each way reaches: the batches go by primary key, one UPDATE by physical order.
    first_key = "SELECT ctid FROM student_course ORDER BY student_id, course_id LIMIT 1"
    first_block = "SELECT min(ctid) FROM student_course"
    batched = migrator(tmp_path / "batched", populated_url, BACKFILL.format(pause=0.05))
    wait_for_migrator(populated_url, running="backfill")
    time.sleep(0.3)  # past the first batches, which include the first row
    assert is_writable(first_key)
    assert batched.finish().returncode == 0
    assert rows(populated_url, "SELECT count(*) FROM student_course WHERE enrolled_at IS NULL") == [(0,)]

    with psycopg.connect(conninfo(populated_url)) as conn:
        conn.execute("UPDATE student_course SET enrolled_at = NULL")
        conn.execute("UPDATE alembic_version SET version_num = %s", (HEAD,))
    one_update = start_alembic(
        "upgrade",
        "head",
        url=populated_url,
        workdir=tmp_path,
        ini=copy_one_update(tmp_path / "one_update"),
    )
    wait_for_migrator(populated_url, running="UPDATE student_course SET enrolled_at")
    time.sleep(0.3)
    assert not is_writable(first_block)
    assert one_update.finish().returncode == 0


ONE_UPDATE = "UPDATE student_course SET enrolled_at = 'epoch' WHERE slowly_true(student_id)"


def copy_one_update(tmp_path: Path) -> Path:
    """A copy whose throwaway revision backfills in one UPDATE that sleeps for each row it sets."""
    ini = copy_project(tmp_path)
    add_revision(
        tmp_path / "migrations",
        THROWAWAY,
        HEAD,
        upgrade=f"op.execute({ONE_UPDATE!r})",
    )
    return ini


def test_a_killed_backfill_resumes_where_it_stopped_and_reports_its_progress(
    populated_url: URL, tmp_path: Path
) -> None:
    killed = migrator(tmp_path / "killed", populated_url, BACKFILL.format(pause=0.05))
    wait_for_migrator(populated_url, running="backfill")
    time.sleep(0.5)
    killed.kill()
    assert killed.finish().returncode == -signal.SIGKILL
    time.sleep(1.5)  # the server ends the killed migrator's session (client_connection_check_interval)
    [(done,)] = rows(populated_url, "SELECT rows_done FROM alembic_backfills WHERE name = 'epoch'")
    done_before = int(str(done))
    assert 0 < done_before < ENROLLMENTS + 3

    result = migrator(tmp_path / "rerun", populated_url, BACKFILL.format(pause=0)).finish()

    assert result.returncode == 0, result.output
    assert "backfill epoch: resuming after key " in result.stderr
    progress = [
        line for line in result.stderr.splitlines() if "backfill epoch: " in line and "rows/s" in line
    ]
    first = int(progress[0].split("backfill epoch: ")[1].split(" of ")[0])
    assert first == done_before + 500, progress[0]  # continued, did not start over
    assert progress[-1].split("backfill epoch: ")[1].startswith(f"{ENROLLMENTS + 3} of ~")
    assert rows(populated_url, "SELECT count(*) FROM student_course WHERE enrolled_at IS NULL") == [(0,)]
    assert rows(populated_url, "SELECT to_regclass('alembic_backfills')") == [(None,)]
