"""Can the (course_id, enrolled_at DESC NULLS LAST, student_id DESC) index replace (course_id, student_id)?

``uv run python -m bench.index_choice [--enrollments N]`` (default 10M): loads a database at the
revision where both indexes exist (84b232aa648e), dates 80% of the enrollments, then measures,
with both indexes and again with the new one only (after c8ba068faa73 drops the old one):

- "students of a course" (``student_ids_of``): its plan, and its time in the server (EXPLAIN
  ANALYZE, median over courses);
- a course's newest students, a page at a time (``newest_students_of``): the plan of each of its
  statements (first page, after a dated row, into the undated, after an undated row);
- what an enrollment costs to write: time per single-row insert and WAL bytes per insert;
- the indexes' sizes.

Prints the figures as Markdown on stdout, progress on stderr. Works on a database it creates
and drops on DATABASE_URL's server, or the embedded one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import psycopg
from alembic import command
from sqlalchemy import URL, create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bench.workload import log, statements
from migrations.bookkeeping import SEED_REVISION
from migrations.database.messages import one_line_errors
from migrations.database.scratch import alembic_config, ensure_server_url, scratch_database
from migrations.database.url import conninfo
from migrations.gate.population import Population, populate
from models.queries import newest_students_of, student_ids_of

BOTH_INDEXES = "84b232aa648e"
COURSES_SAMPLED = 200
INSERTS = 20_000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.index_choice", description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=10_000_000)
    args = parser.parse_args(argv)
    with one_line_errors(1), scratch_database(ensure_server_url(), prefix="bench") as url:
        print(measure(url, args.enrollments))
    return 0


def measure(url: URL, enrollments: int) -> str:
    command.upgrade(alembic_config(url), SEED_REVISION)
    log(f"loading {enrollments:,} enrollments")
    population = populate(url, enrollments)
    command.upgrade(alembic_config(url), BOTH_INDEXES)
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        log("dating 80% of the enrollments (the others stay undated, as enrollments made before dates)")
        conn.execute(
            "UPDATE student_course SET enrolled_at = timestamptz '2020-01-01' "
            "+ (student_id % 1500) * interval '1 day' + (student_id % 7) * interval '1 hour' "
            "WHERE student_id % 5 <> 0"
        )
        conn.execute("VACUUM (FULL, ANALYZE) student_course")
        conn.execute("VACUUM (ANALYZE) student_course")
    courses = range(population.first_course, population.first_course + population.courses)
    sampled = list(courses)[:: max(1, population.courses // COURSES_SAMPLED)]
    sections = [f"{enrollments:,} enrollments, {population.courses:,} courses; PostgreSQL {version(url)}\n"]
    both = lookups(url, sampled, "both indexes")
    sections += [both[0], pages(url, sampled[0])]
    writes_both = writes(url, population, 0, "both indexes")
    command.upgrade(alembic_config(url), "head")
    new_only = lookups(url, sampled, "the new index only")
    writes_new = writes(url, population, 1, "the new index only")
    sections += [new_only[0]]
    rows = [
        ["students of a course, in the server (median)", f"{both[1]:.3f} ms", f"{new_only[1]:.3f} ms"],
        [
            "an enrollment written (one-row INSERT, in the server)",
            f"{writes_both[0]:.0f} µs",
            f"{writes_new[0]:.0f} µs",
        ],
        ["WAL per enrollment written", f"{writes_both[1]:.0f} B", f"{writes_new[1]:.0f} B"],
        ["index sizes", writes_both[2], writes_new[2]],
    ]
    sections.append(markdown(["", "both indexes", "the new index only"], rows))
    return "\n".join(sections)


def version(url: URL) -> str:
    with psycopg.connect(conninfo(url)) as conn:
        return conn.info.parameter_status("server_version") or "unknown"


def lookups(url: URL, courses: list[int], label: str) -> tuple[str, float]:
    """The plan of student_ids_of, and its median time in the server over `courses`."""
    engine = create_engine(url, poolclass=NullPool)
    with Session(engine) as session, statements(engine) as sent:
        student_ids_of(session, courses[0])
    [(statement, parameters)] = sent
    times: list[float] = []
    plan: list[str] = []
    with engine.connect() as connection:
        for course in courses:
            parameters = {**parameters, "id": course}
            explained = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            plan = [row[0] for row in explained]
            times += [float(line.split()[2]) for line in plan if line.startswith("Execution Time")]
    engine.dispose()
    log(f"students of a course with {label}: {statistics.median(times):.3f} ms")
    return f"students of a course, {label}:\n\n```\n" + "\n".join(plan) + "\n```\n", statistics.median(times)


def pages(url: URL, course: int) -> str:
    """The plan of every statement newest_students_of sends, through a course and into its undated."""
    engine = create_engine(url, poolclass=NullPool)
    with Session(engine) as session, statements(engine) as sent:
        everyone = []
        page = newest_students_of(session, course, limit=50)
        while page:
            everyone += page
            page = newest_students_of(session, course, limit=50, after=page[-1])
    shown: dict[str, tuple[str, Any]] = {}
    for statement, parameters in sent:
        kind = (
            "after an undated row"
            if "enrolled_at IS NULL" in statement and parameters.get("student_id", 0) < 2**63 - 1
            else "into the undated"
            if "enrolled_at IS NULL" in statement
            else "after a dated row"
            if "enrolled_at, student_course.student_id) <" in statement
            else "first page"
        )
        shown.setdefault(kind, (statement, parameters))
    sections = [
        f"a course's newest students, 50 a page ({len(everyone)} students, {len(sent)} statements):\n"
    ]
    with engine.connect() as connection:
        for kind, (statement, parameters) in shown.items():
            explained = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            sections.append(f"{kind}:\n\n```\n" + "\n".join(row[0] for row in explained) + "\n```\n")
    engine.dispose()
    return "\n".join(sections)


def writes(url: URL, population: Population, shift: int, label: str) -> tuple[float, float, str]:
    """Microseconds and WAL bytes per enrollment written, in the server, and the indexes' sizes.

    INSERTS one-row INSERTs in a PL/pgSQL loop (no round trips to time), right after a
    checkpoint, as a steady write load meets one. Each is a new enrollment: loaded student i
    takes courses (i * 7 + k * 13) mod courses for k = 0..4, and here k = 5 (plus `shift`, so
    that two runs enroll different pairs).
    """
    step = max(1, population.students // INSERTS)
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        started = time.perf_counter()
        conn.execute(
            f"""
            DO $$
            BEGIN
                FOR i IN 0..{INSERTS - 1} LOOP
                    INSERT INTO student_course (student_id, course_id) VALUES (
                        {population.first_student} + i * {step},
                        {population.first_course} + ((i * {step}) * 7 + 65 + {shift}) % {population.courses}
                    ) ON CONFLICT DO NOTHING;
                END LOOP;
            END $$
            """
        )
        took = (time.perf_counter() - started) / INSERTS * 1e6
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", start_lsn).fetchone()
        sizes = conn.execute(
            "SELECT string_agg(format('%s %s', indexrelid::regclass, "
            "pg_size_pretty(pg_relation_size(indexrelid))), '; ' ORDER BY indexrelid::regclass::text) "
            "FROM pg_index WHERE indrelid = 'student_course'::regclass"
        ).fetchone()
    per_insert = float(wal[0] if wal else 0) / INSERTS
    log(f"writes with {label}: {took:.0f} µs and {per_insert:.0f} B of WAL per enrollment")
    return took, per_insert, str(sizes[0] if sizes else "")


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
