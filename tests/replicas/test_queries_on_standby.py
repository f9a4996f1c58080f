"""models/queries.py read through a read-only session bound to the standby, the way an app routes reads."""

from __future__ import annotations

import re

import pytest
from alembic import command
from psycopg.errors import ReadOnlySqlTransaction
from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.exc import InternalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from migrations.database.scratch import alembic_config
from models.queries import (
    UnknownCourseError,
    UnknownStudentError,
    course_ids_of,
    enroll,
    enroll_many,
    iter_roster,
    roster,
    student_ids_of,
)
from tests.helpers.commands import PROJECT
from tests.helpers.replication import Replicated

README = (PROJECT / "README.md").read_text()


def replica_engine(url: URL) -> Engine:
    """What the README shows: every transaction on this engine is READ ONLY."""
    return create_engine(url, poolclass=NullPool, execution_options={"postgresql_readonly": True})


def answers(session: Session) -> tuple[object, ...]:
    students = roster(session)
    courses = sorted({course.id for student in students for course in student.courses})
    return (
        [(student.name, [course.title for course in student.courses]) for student in students],
        list(iter_roster(session, batch=2)),  # a server-side cursor, fetched in several batches
        {course: student_ids_of(session, course) for course in courses},
        {student.id: course_ids_of(session, student.id) for student in students},
    )


def test_roster_and_lookups_read_on_the_standby_what_the_primary_holds(replicated: Replicated) -> None:
    command.upgrade(alembic_config(replicated.primary), "head")
    primary = create_engine(replicated.primary, poolclass=NullPool)
    with Session(primary) as session:
        students = [student.id for student in roster(session)]
        courses = sorted({course.id for student in roster(session) for course in student.courses})
        enroll_many(session, [(student, course) for student in students for course in courses])
        session.commit()
        on_primary = answers(session)
    primary.dispose()
    replicated.cluster.wait_for_replay()

    replica = replica_engine(replicated.standby)
    reads = sessionmaker(replica)
    with reads() as session:
        assert answers(session) == on_primary
        assert on_primary[0], "the seed left no students to read"
        with pytest.raises(UnknownCourseError):
            student_ids_of(session, 0)
        with pytest.raises(UnknownStudentError):
            course_ids_of(session, 0)
    replica.dispose()

    # The same engine pointed at a primary (a development setup, a failover) writes nothing either.
    for url in (replicated.standby, replicated.primary):
        read_only = replica_engine(url)
        with Session(read_only) as session, pytest.raises(InternalError) as refused:
            enroll(session, students[0], courses[0])
        assert isinstance(refused.value.orig, ReadOnlySqlTransaction)
        read_only.dispose()


def test_the_readmes_routing_example_reads_from_the_standby_and_writes_to_the_primary(
    replicated: Replicated, monkeypatch: pytest.MonkeyPatch
) -> None:
    command.upgrade(alembic_config(replicated.primary), "head")
    replicated.cluster.wait_for_replay()
    section = README.split("### Reading from a replica", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert example, "the README's Replicas section has no Python example"
    monkeypatch.setenv("DATABASE_URL", replicated.primary.render_as_string(hide_password=False))
    monkeypatch.setenv("REPLICA_URL", replicated.standby.render_as_string(hide_password=False))

    namespace: dict[str, object] = {}
    exec(example.group(1), namespace)

    primary = create_engine(replicated.primary, poolclass=NullPool)
    with Session(primary) as session:
        assert namespace["enrolled"] == student_ids_of(session, 1)
        assert 1 in student_ids_of(session, 2)  # its write reached the primary
    primary.dispose()
