"""This release's own code, run against a database: what the next release's gate runs as N-1.

The convention: every release ships this module, ``migrations/gate/exercise.py``, with
``run(database_url) -> list[str]``. It uses the release's models, its query functions and the
seed's demo against that database, reading and writing, and returns what failed, one line per
step. During the next release's rolling deploy this release's code still runs against the
migrated schema, so the next release's gate (previous_release.py) checks out this release's tree
and runs this module there, from that tree, against a database upgraded to the new head.

A release that has no such module (v0.1.0, the first tagged) is run through the next release's
copy of it, which therefore finds the modules by every name they have had: the query functions
in ``models.queries`` or ``models.access``, the demo in ``migrations.seed_demo`` or
``models.seed_demo``, and calls only the functions the release has. It imports the release's
modules by name, at run time, and nothing else of the project: it runs in the release's tree.
When a release changes what its code does, it updates this module; the next gate runs that.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
from collections.abc import Callable
from types import ModuleType
from typing import Any

QUERY_MODULES = ("models.queries", "models.access")
SEED_DEMOS = ("migrations.seed_demo", "models.seed_demo")
NAME = "N-1 check"


def module(names: tuple[str, ...]) -> ModuleType:
    for name in names:
        with contextlib.suppress(ModuleNotFoundError):
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
    raise ModuleNotFoundError(f"none of {', '.join(names)}")


def run(database_url: str) -> list[str]:
    """Each step's failure as 'step: error'; [] when the release's code works on this database."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    failures: list[str] = []

    def step(name: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - every failure is a finding, the next step still runs
            message = str(getattr(error, "orig", None) or error).strip().splitlines()
            failures.append(f"{name}: {type(error).__name__}: {message[0] if message else ''}")

    models = importlib.import_module("models")
    queries = module(QUERY_MODULES)
    engine = create_engine(database_url)

    def demo() -> None:
        # The tutorial's own code: ORM inserts of students, courses and enrollments, then the roster.
        with contextlib.redirect_stdout(io.StringIO()):
            module(SEED_DEMOS).main()

    step("the seed's demo (ORM inserts, then the roster)", demo)

    def call(name: str, *args: Any, **keywords: Any) -> Any:
        function = getattr(queries, name, None)
        return None if function is None else function(*args, **keywords)

    def reads() -> None:
        with Session(engine) as session:
            student = session.scalars(select(models.Student).order_by(models.Student.id)).first()
            course = session.scalars(select(models.Course).order_by(models.Course.id)).first()
            assert student is not None, "no student to read"
            assert course is not None, "no course to read"
            for loaded in call("roster", session) or []:
                _ = [course.title for course in loaded.courses]
            list(call("iter_roster", session) or [])
            call("student_ids_of", session, course.id)
            call("course_ids_of", session, student.id)
            page = call("newest_students_of", session, course.id, limit=1)
            if page:
                call("newest_students_of", session, course.id, limit=1, after=page[-1])
            _ = [course.title for course in student.courses], [other.name for other in course.students]
            _ = [(row.course_id, row.enrolled_at) for row in getattr(student, "enrollments", [])]

    step("its queries (roster, iter_roster, the lookups, newest_students_of, relationships)", reads)

    def writes() -> None:
        with Session(engine) as session:
            student, course = models.Student(name=NAME), models.Course(title=NAME)
            session.add_all([student, course])
            session.flush()
            call("enroll", session, student.id, course.id)
            call("unenroll", session, student.id, course.id)
            call("enroll_many", session, [(student.id, course.id)])
            student.courses.append(models.Course(title=f"{NAME} 2"))
            session.flush()
            student.name = f"{NAME}, renamed"
            session.flush()
            session.delete(student)
            session.delete(course)
            session.commit()

    step("its writes (enroll, unenroll, enroll_many, ORM update and delete)", writes)
    engine.dispose()
    return failures
