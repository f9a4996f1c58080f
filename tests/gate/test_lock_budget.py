"""Check 1 of the deploy gate: each revision measured on a populated database under traffic.

One database is loaded at the schema revision with 1M enrollments (the CI scale), and a copy of
migrations/ gets one throwaway revision per case the gate must catch, after the project's own
revisions. One upgrade under traffic measures them all: the project's revisions must pass, each
throwaway must be reported, naming its revision, its statement, the lock and the time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.bookkeeping import SCHEMA_REVISION
from migrations.catalog import catalog, contents
from migrations.database.scratch import alembic_config
from migrations.gate.lock_budget import DEFAULT_BUDGET, Measurement, measure
from migrations.gate.population import populate
from migrations.gate.report import RevisionReport
from migrations.gate.traffic import Settings
from migrations.history import scripts
from tests.helpers.copies import add_revision, copy_migrations
from tests.helpers.forked_cli import start_module
from tests.helpers.snapshots import rows
from tests.helpers.types import MakeDatabase

pytestmark = pytest.mark.migrations

ENROLLMENTS = 1_000_000
PROJECT_REVISIONS = [script.revision for script in scripts(SCRIPT_LOCATION)]
AFTER_SCHEMA = PROJECT_REVISIONS[PROJECT_REVISIONS.index(SCHEMA_REVISION) + 1 :]

# revision: (upgrade body, the statement reported, what the gate must say about it)
CASES = {
    "a1c0de000001": (
        "op.execute('CREATE INDEX ix_student_course_student_id ON student_course (student_id)')",
        "CREATE INDEX ix_student_course_student_id ON student_course (student_id)",
        r"held SHARE on student_course for \d+ ms, over the 100 ms budget; it blocks writes; "
        r"build it with create_index_concurrently",
    ),
    "a1c0de000002": (
        "op.execute('ALTER TABLE students ADD COLUMN stamped timestamptz DEFAULT clock_timestamp()')",
        "ALTER TABLE students ADD COLUMN stamped timestamptz DEFAULT clock_timestamp()",
        r"rewrote students \(relfilenode \d+ -> \d+\), a table holding rows, holding ACCESS EXCLUSIVE on it "
        r"for \d+ ms",
    ),
    "a1c0de000003": (
        "op.execute('ALTER TABLE students ALTER COLUMN name TYPE varchar(200)')",
        "ALTER TABLE students ALTER COLUMN name TYPE varchar(200)",
        r"rewrote students \(relfilenode \d+ -> \d+\), a table holding rows, holding ACCESS EXCLUSIVE on it "
        r"for \d+ ms",
    ),
    "a1c0de000004": (
        "op.execute('ALTER TABLE student_course ADD CONSTRAINT fk_again FOREIGN KEY (student_id) "
        "REFERENCES students (id)')",
        "ALTER TABLE student_course ADD CONSTRAINT fk_again FOREIGN KEY (student_id) "
        "REFERENCES students (id)",
        r"held SHARE ROW EXCLUSIVE on (student_course|students) for \d+ ms, over the 100 ms budget; it "
        r"blocks writes; add it NOT VALID, then VALIDATE in a transaction of its own",
    ),
    "a1c0de000005": (
        "op.execute('ALTER TABLE student_course ADD CONSTRAINT fk_later FOREIGN KEY (student_id) "
        "REFERENCES students (id) NOT VALID'); "
        "op.execute('ALTER TABLE student_course VALIDATE CONSTRAINT fk_later')",
        "ALTER TABLE student_course ADD CONSTRAINT fk_later FOREIGN KEY (student_id) "
        "REFERENCES students (id) NOT VALID",
        r"took SHARE ROW EXCLUSIVE on (student_course|students) and the same transaction kept it \d+ ms, "
        r"through `ALTER TABLE student_course VALIDATE CONSTRAINT fk_later` \(\d+ ms\), over the 100 ms "
        r"budget",
    ),
    "a1c0de000006": (
        "op.execute('ALTER TABLE students ADD COLUMN nickname text'); "
        "op.execute('UPDATE students SET nickname = name')",
        "ALTER TABLE students ADD COLUMN nickname text",
        r"took ACCESS EXCLUSIVE on students and the same transaction kept it \d+ ms, through "
        r"`UPDATE students SET nickname = name` \(\d+ ms\), over the 100 ms budget; it blocks reads and "
        r"writes",
    ),
}
# Measured like the others, but its table is new and empty: nobody waits for it.
EMPTY_TABLE = (
    "a1c0de000007",
    "op.execute('CREATE TABLE notes (id bigint PRIMARY KEY, body text)'); "
    "op.execute('CREATE INDEX ix_notes_body ON notes (body)')",
)


@pytest.fixture(scope="module")
def measured(make_database: MakeDatabase, tmp_path_factory: pytest.TempPathFactory) -> Measurement:
    copy = copy_migrations(tmp_path_factory.mktemp("lock_budget"))
    previous = PROJECT_REVISIONS[-1]
    for revision, body in [*((revision, case[0]) for revision, case in CASES.items()), EMPTY_TABLE]:
        add_revision(copy, revision, previous, upgrade=body)
        previous = revision
    url = make_database()
    command.upgrade(alembic_config(url), SCHEMA_REVISION)
    before = catalog(url)
    population = populate(url, ENROLLMENTS)
    assert catalog(url) == before, "loading changed the schema"
    assert rows(url, "SELECT count(*) FROM student_course") == [(ENROLLMENTS,)]
    return measure(url, script_location=copy, population=population, traffic=Settings(clients=4, rate=25))


def report_of(measurement: Measurement, revision: str) -> RevisionReport:
    [report] = [report for report in measurement.reports if report.revision.revision == revision]
    return report


def test_the_loader_keeps_the_schema_and_loads_students_and_courses_in_proportion(
    make_database: MakeDatabase,
) -> None:
    url = make_database()
    command.upgrade(alembic_config(url), "head")
    before, seeded = catalog(url), contents(url)
    population = populate(url, 10_000)
    assert catalog(url) == before
    assert (population.students, population.courses, population.enrollments) == (2000, 100, 10_000)
    assert set(seeded) <= set(contents(url)), "the seed's rows were changed"
    loaded_courses = f"course_id >= {population.first_course}"
    per_course = rows(url, f"SELECT count(*) FROM student_course WHERE {loaded_courses} GROUP BY course_id")
    assert sorted(per_course) == [(100,)] * 100
    loaded = f"SELECT count(*) FROM student_course WHERE student_id >= {population.first_student}"
    assert rows(url, loaded) == [(10_000,)]


def test_the_projects_revisions_hold_no_blocking_lock_over_the_budget_on_a_populated_busy_database(
    measured: Measurement,
) -> None:
    for revision in AFTER_SCHEMA:
        report = report_of(measured, revision)
        assert report.revision.populated == {"students", "courses", "student_course"}
        assert report.violations == [], "\n".join(map(str, report.violations))
        for row in report.statements:
            assert row.longest(writes=True) <= DEFAULT_BUDGET, row.sql
            assert not row.rewritten, row.sql
    assert measured.traffic is not None
    assert len(measured.traffic.transactions) > 50, "the application's traffic did not run"
    assert measured.recording.error is None


@pytest.mark.parametrize(
    "revision",
    list(CASES),
    ids=[
        "plain CREATE INDEX",
        "ADD COLUMN with a volatile default",
        "ALTER COLUMN TYPE",
        "ADD CONSTRAINT without NOT VALID",
        "NOT VALID and VALIDATE in one transaction",
        "an ALTER then an UPDATE of every row in one transaction",
    ],
)
def test_each_way_of_blocking_a_busy_table_is_reported_with_its_revision_statement_lock_and_time(
    measured: Measurement, revision: str
) -> None:
    _, statement, message = CASES[revision]
    [violation] = report_of(measured, revision).violations
    assert (violation.revision, violation.statement) == (revision, statement)
    assert re.match(message, violation.message), violation.message


def test_a_revision_on_an_empty_table_is_measured_but_holds_nobody_up(measured: Measurement) -> None:
    report = report_of(measured, EMPTY_TABLE[0])
    assert [row.sql for row in report.statements] == [
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text)",
        "CREATE INDEX ix_notes_body ON notes (body)",
    ]
    assert report.violations == []


def test_the_statements_taking_access_exclusive_are_named_for_the_standbys_that_replay_them(
    measured: Measurement,
) -> None:
    rewrite = report_of(measured, "a1c0de000002").statements[0]
    assert "students" in rewrite.access_exclusive
    plain_build = report_of(measured, "a1c0de000001").statements[0]
    assert plain_build.access_exclusive == []  # its new index's lock: nobody else can see that index yet
    assert plain_build.locks_by_table() == "student_course: SHARE"


def test_the_lock_sampler_reads_pg_locks_every_ten_milliseconds_or_faster(measured: Measurement) -> None:
    gaps = sorted(measured.tick_gaps)
    assert len(gaps) > 100
    assert gaps[len(gaps) // 2] <= 0.010


def test_the_gate_command_passes_on_the_projects_revisions_and_prints_a_table_per_revision(
    tmp_path: Path, server_url: URL
) -> None:
    result = start_module(
        "migrations.gate",
        "--enrollments",
        "20000",
        "--load-at",
        SCHEMA_REVISION,
        url=server_url,
        workdir=tmp_path,
    ).finish(timeout=180)
    assert result.returncode == 0, result.output
    for revision in PROJECT_REVISIONS:
        assert re.search(rf"^PASS {revision} ", result.stdout, re.M), result.stdout
    assert (
        "| statement | locks taken | blocks writes | blocks reads | rewrite | app waited | ACCESS EXCLUSIVE |"
        in (result.stdout)
    )
    assert "its code run against the new head" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("PASS: no revision holds a lock")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--budget", "soon"], "error: argument --budget: 'soon' is not a duration such as 100ms or 0.5s"),
        (
            ["--enrollments", "5"],
            "error: --enrollments must be at least 1000, --clients at least 1, --rate above 0",
        ),
        (["--load-at", "0000deadbeef"], "error: --load-at 0000deadbeef: no such revision in this history"),
    ],
    ids=["a budget that is no duration", "too few enrollments", "an unknown revision"],
)
def test_bad_arguments_get_one_line_and_exit_2(
    arguments: list[str], message: str, tmp_path: Path, server_url: URL
) -> None:
    result = start_module("migrations.gate", *arguments, url=server_url, workdir=tmp_path).finish()
    assert result.returncode == 2
    assert [line.split(" (see ")[0] for line in result.message] == [message]
