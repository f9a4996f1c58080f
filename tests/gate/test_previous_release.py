"""Check 2 of the deploy gate (N-1): the previous release's own code against the new head.

The project's own revisions pass it in tests/gate/test_lock_budget.py, through the gate command.
Here a copy of migrations/ gets throwaway revisions after the head, some that break the previous
release and some that must not count against it, and one check runs the previous release's code
against the copy's head.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.gate.previous_release import (
    PreviousReleaseError,
    PreviousReleaseReport,
    Release,
    check,
    find,
    resolve,
)
from migrations.history import scripts
from tests.helpers.copies import add_revision, copy_migrations

pytestmark = pytest.mark.migrations

HEAD = scripts(SCRIPT_LOCATION)[-1].revision
CONTRACT = 'contract = "nothing released ever used it"'
# revision: (upgrade body, preamble), applied in this order after the head
REVISIONS = {
    "b0c0de000001": ("op.execute('DROP INDEX ix_courses_title')", ""),
    "b0c0de000002": (
        "op.execute('ALTER TABLE students ADD COLUMN nickname text'); "
        "op.execute('ALTER TABLE courses ADD COLUMN note text')",
        "",
    ),
    "b0c0de000003": ("op.execute('ALTER TABLE students DROP COLUMN nickname')", CONTRACT),
    "b0c0de000004": ("op.execute('ALTER TABLE courses DROP COLUMN note')", ""),
    "b0c0de000005": ("op.execute('ALTER TABLE students RENAME COLUMN name TO full_name')", ""),
    "b0c0de000006": ("op.execute('DROP TABLE student_course')", CONTRACT),
    "b0c0de000007": (
        "op.execute(\"ALTER TABLE courses ADD COLUMN code text NOT NULL DEFAULT ''\"); "
        "op.execute('ALTER TABLE courses ALTER COLUMN code DROP DEFAULT')",
        "",
    ),
    "b0c0de000008": (
        "op.execute('ALTER TABLE courses ALTER COLUMN title TYPE varchar(8) USING left(title, 8)')",
        "",
    ),
}


@pytest.fixture(scope="module")
def checked(server_url: URL, tmp_path_factory: pytest.TempPathFactory) -> PreviousReleaseReport:
    copy = copy_migrations(tmp_path_factory.mktemp("previous_release"))
    # An index of the head to drop: whatever indexes the project's own revisions keep or drop.
    add_revision(
        copy, "b0c0de000000", HEAD, upgrade="op.execute('CREATE INDEX ix_courses_title ON courses (title)')"
    )
    previous = "b0c0de000000"
    for revision, (upgrade, preamble) in REVISIONS.items():
        add_revision(copy, revision, previous, upgrade=upgrade, preamble=preamble)
        previous = revision
    # HEAD, in a clone with tags or without: the revisions added here are what is new.
    return check(server_url, resolve("HEAD"), script_location=copy)


def findings(report: PreviousReleaseReport, revision: str | None) -> list[str]:
    return [finding.message for finding in report.findings if finding.revision == revision]


def test_the_previous_release_runs_from_its_own_tree_against_every_revision_since_its_head(
    checked: PreviousReleaseReport,
) -> None:
    assert checked.new_revisions[-len(REVISIONS) - 1 :] == ["b0c0de000000", *REVISIONS]
    assert checked.head in [script.revision for script in scripts(SCRIPT_LOCATION)]
    assert "exercise.py" in checked.exercise


def test_renaming_a_column_the_previous_release_uses_is_reported_naming_what_uses_it(
    checked: PreviousReleaseReport,
) -> None:
    assert findings(checked, "b0c0de000005") == [
        f"removes column students.name, which the previous release ({checked.release.name}) still uses "
        "(models.students.Student.name). A drop or rename is allowed only as a declared contract step in a "
        "later release than the one that stopped using it: ship a release whose code no longer uses it "
        'first, then drop it in the next, declaring contract = "why" in that revision'
    ]


def test_dropping_a_table_the_previous_release_uses_is_reported_even_when_declared_a_contract_step(
    checked: PreviousReleaseReport,
) -> None:
    [message] = findings(checked, "b0c0de000006")
    assert message.startswith(
        f"removes table student_course, which the previous release ({checked.release.name}) "
    )


def test_a_not_null_column_without_a_default_is_reported_because_the_old_inserts_leave_it_out(
    checked: PreviousReleaseReport,
) -> None:
    assert (
        f"the new head's courses.code is NOT NULL without a default, and the previous release "
        f"({checked.release.name}) inserts into courses without it (models.courses.Course): give it a "
        "default, or make it NOT NULL in a later release"
    ) in findings(checked, None)


def test_narrowing_a_type_the_previous_release_writes_is_reported(checked: PreviousReleaseReport) -> None:
    assert (
        f"the previous release ({checked.release.name}) maps courses.title as text (models.courses.Course); "
        "the new head makes it character varying(8), which not every value it reads and writes fits: widen, "
        "or add a new column instead"
    ) in findings(checked, None)


def test_the_previous_releases_own_code_fails_on_the_broken_schema_and_each_failure_is_reported(
    checked: PreviousReleaseReport,
) -> None:
    ran = [
        message for message in findings(checked, None) if ", run against the new head, failed: " in message
    ]
    assert any("the seed's demo" in message for message in ran), ran
    assert any("its queries" in message and "student" in message for message in ran), ran


def test_a_drop_nothing_released_uses_needs_a_declared_contract_step(checked: PreviousReleaseReport) -> None:
    assert findings(checked, "b0c0de000004") == [
        "removes column courses.note (a drop or a rename loses what it held) without declaring a contract "
        'step: add contract = "why" to the revision, once no released code uses it'
    ]
    assert findings(checked, "b0c0de000003") == []  # declared, and never released


def test_dropping_an_index_is_no_destructive_step(checked: PreviousReleaseReport) -> None:
    assert findings(checked, "b0c0de000001") == []


def git(repository: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git repository holding a copy of migrations/: a first commit, then one adding a revision."""
    root = tmp_path / "repository"
    copy_migrations(root)
    git(root, "init", "--quiet")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "the released history")
    add_revision(root / "migrations", "c0ffee000001", HEAD, upgrade="op.execute('SELECT 1')")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "a new revision")
    return root


def test_the_previous_release_is_the_last_v_tag_reachable_from_head_and_not_on_head(repository: Path) -> None:
    first = git(repository, "rev-parse", "HEAD~1")
    git(repository, "tag", "v1.0.0", first)
    git(repository, "tag", "v1.1.0", "HEAD")  # the release being checked is not its own previous one
    assert find(repository, repository / "migrations") == Release("v1.0.0", first)


def test_without_a_tag_the_previous_release_is_the_commit_before_the_newest_revision_was_added(
    repository: Path,
) -> None:
    first = git(repository, "rev-parse", "HEAD~1")
    found = find(repository, repository / "migrations")
    assert found.commit == first
    assert "c0ffee000001" in found.name


def test_without_a_tag_revisions_outside_the_repository_are_new_and_the_previous_release_is_head(
    repository: Path, tmp_path: Path
) -> None:
    elsewhere = copy_migrations(tmp_path / "elsewhere")
    add_revision(elsewhere, "c0ffee000002", HEAD, upgrade="op.execute('SELECT 2')")
    found = find(repository, elsewhere)
    assert found.commit == git(repository, "rev-parse", "HEAD")
    assert found.name.startswith("HEAD (")


def test_without_a_tag_an_unchanged_copy_of_migrations_finds_the_release_before_its_newest_revision(
    repository: Path, tmp_path: Path
) -> None:
    elsewhere = copy_migrations(tmp_path / "elsewhere")
    shutil.copy(
        next((repository / "migrations" / "versions").glob("*c0ffee000001*.py")), elsewhere / "versions"
    )
    assert find(repository, elsewhere).commit == git(repository, "rev-parse", "HEAD~1")


def test_a_shallow_clone_without_tags_is_told_to_fetch_them(repository: Path, tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "--quiet", "--depth", "1", repository.as_uri(), str(clone))
    with pytest.raises(PreviousReleaseError, match=r"this clone is shallow .* git fetch --tags --unshallow"):
        find(clone, clone / "migrations")
    shutil.rmtree(clone)
