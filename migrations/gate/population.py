"""A database populated at scale, fast: students, courses and enrollments loaded by COPY.

Whatever revision the database is at, the loader keeps its schema exactly (the catalog is the
same before and after): it reads the definitions of the primary keys, unique constraints,
foreign keys and indexes of the three tables, drops them, COPYs the rows in, and builds them
again from those definitions, because one sort per index is several times faster than
maintaining every index row by row (10M enrollments: about 27 s against 176 s here). The
statistics and the visibility map are then made by ``VACUUM (ANALYZE)``, so the planner knows
the sizes and index-only scans skip the heap, as on a database that has been running a while.

Students and courses are in proportion: each student takes ``COURSES_PER_STUDENT`` courses,
each course has about ``STUDENTS_PER_COURSE`` students (10M enrollments: 2M students, 10,000
courses). Student ``i`` of the load takes courses ``(i * 7 + k * 13) mod courses``, k = 0..4,
which the application traffic uses to find existing enrollments without reading them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations.database.url import conninfo

COURSES_PER_STUDENT = 5
STUDENTS_PER_COURSE = 1000
# Fewer courses than this and the k * 13 steps of one student could land on the same course.
MIN_COURSES = 100
TABLES = ("students", "courses", "student_course")
# Rows sent to COPY per write: big enough to keep the server busy, small enough to stay flat in memory.
CHUNK = 100_000
# For the index builds and the foreign keys' validation: sorts in memory, two workers.
LOAD_SETTINGS = {
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "2",
    "synchronous_commit": "off",
}


@dataclass(frozen=True)
class Population:
    """What was loaded: id ranges the traffic draws from, and how the enrollments were spread."""

    enrollments: int
    first_student: int
    students: int
    first_course: int
    courses: int

    def course_of(self, student_index: int, k: int) -> int:
        """The id of the k-th course of the student loaded at position `student_index`."""
        return self.first_course + (student_index * 7 + k * 13) % self.courses


def shape(enrollments: int) -> tuple[int, int]:
    """How many students and courses hold about `enrollments` enrollments in proportion."""
    students = max(1, enrollments // COURSES_PER_STUDENT)
    return students, max(MIN_COURSES, enrollments // STUDENTS_PER_COURSE)


Log = Callable[[str], None]


def populate(url: URL, enrollments: int, log: Log = lambda message: None) -> Population:
    """Load `enrollments` enrollments (and their students and courses) into the database at `url`."""
    students, courses = shape(enrollments)
    started = time.perf_counter()
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        for name, value in LOAD_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        structures = secondary_structures(conn)
        with conn.transaction():
            for statement in structures.drops():
                conn.execute(statement)
            first_student = copy_names(conn, "students", "name", "student", students)
            first_course = copy_names(conn, "courses", "title", "course", courses)
            population = Population(
                students * COURSES_PER_STUDENT, first_student, students, first_course, courses
            )
            copy_enrollments(conn, population)
        log(f"copied {population.enrollments:,} enrollments in {time.perf_counter() - started:.1f} s")
        # Statistics first: the foreign keys are validated by a query the planner plans.
        conn.execute(f"ANALYZE {', '.join(TABLES)}")
        for statement in structures.builds():
            conn.execute(statement)
        log(f"built the keys and indexes after {time.perf_counter() - started:.1f} s")
        conn.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
    log(f"loaded and vacuumed in {time.perf_counter() - started:.1f} s")
    return population


@dataclass(frozen=True)
class Structures:
    """The definitions of what COPY would otherwise maintain row by row."""

    keys: list[tuple[str, str, str]]  # (table, name, definition): primary keys, unique, exclusion
    indexes: list[tuple[str, str]]  # (name, CREATE INDEX statement)
    foreign_keys: list[tuple[str, str, str]]

    def drops(self) -> Iterator[str]:
        for table, name, _ in self.foreign_keys:
            yield f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'
        for table, name, _ in self.keys:
            yield f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'
        for name, _ in self.indexes:
            yield f'DROP INDEX "{name}"'

    def builds(self) -> Iterator[str]:
        for table, name, definition in self.keys:
            yield f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'
        for _, statement in self.indexes:
            yield statement
        for table, name, definition in self.foreign_keys:
            yield f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'


def secondary_structures(conn: psycopg.Connection[Any]) -> Structures:
    tables = list(TABLES)
    constraints = conn.execute(
        """
        SELECT k.conrelid::regclass::text, k.conname, pg_get_constraintdef(k.oid), k.contype
        FROM pg_constraint k
        WHERE k.contype IN ('p', 'u', 'x', 'f')
          AND (k.conrelid = ANY(%(tables)s::regclass[]) OR k.confrelid = ANY(%(tables)s::regclass[]))
        ORDER BY k.conname
        """,
        {"tables": tables},
    ).fetchall()
    indexes = conn.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%(tables)s::regclass[])
          AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype <> 'f')
        ORDER BY 1
        """,
        {"tables": tables},
    ).fetchall()
    return Structures(
        keys=[(table, name, definition) for table, name, definition, kind in constraints if kind != "f"],
        indexes=[(name, statement) for name, statement in indexes],
        foreign_keys=[
            (table, name, definition) for table, name, definition, kind in constraints if kind == "f"
        ],
    )


def copy_names(conn: psycopg.Connection[Any], table: str, column: str, prefix: str, count: int) -> int:
    """COPY `count` rows named '<prefix> n'; the first new id (the identity gives consecutive ones)."""
    with conn.cursor().copy(f"COPY {table} ({column}) FROM STDIN") as copy:
        for start in range(1, count + 1, CHUNK):
            copy.write("".join(f"{prefix} {n}\n" for n in range(start, min(start + CHUNK, count + 1))))
    row = conn.execute(
        f"SELECT min(id), max(id), count(*) FROM (SELECT id FROM {table} ORDER BY id DESC LIMIT %s) AS new",
        (count,),
    ).fetchone()
    assert row is not None
    first, last, found = row
    if last - first + 1 != found:
        raise RuntimeError(f"the {count} {table} loaded did not get consecutive ids ({first}..{last})")
    return int(first)


def copy_enrollments(conn: psycopg.Connection[Any], population: Population) -> None:
    steps = [k * 13 for k in range(COURSES_PER_STUDENT)]
    first_student, first_course, courses = (
        population.first_student,
        population.first_course,
        population.courses,
    )
    per_chunk = CHUNK // COURSES_PER_STUDENT
    with conn.cursor().copy("COPY student_course (student_id, course_id) FROM STDIN") as copy:
        for start in range(0, population.students, per_chunk):
            lines = [
                f"{first_student + index}\t{first_course + (index * 7 + step) % courses}\n"
                for index in range(start, min(start + per_chunk, population.students))
                for step in steps
            ]
            copy.write("".join(lines))
