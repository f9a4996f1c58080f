"""Check 2 (N-1): the previous release's own code against a database upgraded to the new head.

During a rolling deploy the previous release keeps running while the new head is applied, so
it has to work on every schema between its head and the new one. This check:

1. finds the previous release (``find``): the last ``v*`` tag reachable from HEAD, not on HEAD
   itself; without one, the commit before the newest revision file was added. A shallow clone
   (CI's default, depth 1) has neither: fetch the tags and history first
   (``git fetch --tags --unshallow``, or actions/checkout's ``fetch-depth: 0``);
2. extracts its tree (``git archive``) and reads its head revision from its revision files;
3. upgrades a scratch database to that head, then revision by revision to the new head, reading
   the tables and columns after each;
4. runs the release's own code there, in a process whose sys.path starts with its tree:
   release_probe.py reports what its models map and what failed when its exercise ran
   (exercise.py says what that does, and the convention a release follows to provide it).

It fails when the release's code failed; when a table or column its models map is gone, changed
type other than by widening, or a new column of a table it writes is NOT NULL with no default
(its inserts leave it out); and when a revision removes a table or column (a drop or a rename:
what it held is lost) without declaring itself a contract step, ``contract = "why"``, or while
the previous release still uses what it removes. A contract step belongs in a later release than
the one that stopped using the thing: first ship the code that no longer uses it, then drop it.

Index drops are not destructive steps and need no declaration: they lose no data, no statement
names an index, and every query of the previous release keeps working (this check runs them).
Whether a query stays fast without an index is measured by the benchmark, not decided here.
Dropping a constraint is treated the same way: the data stays, and what the old code relies on
(an ON CONFLICT target, say) fails its run.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.util import CommandError
from sqlalchemy import URL

from migrations import ALEMBIC_INI, SCRIPT_LOCATION
from migrations.bookkeeping import MIGRATION_TABLES
from migrations.database.scratch import alembic_config, scratch_database
from migrations.database.url import ENV_VAR, conninfo
from migrations.history import assigned, parsed, scripts

PROJECT = ALEMBIC_INI.parent
HERE = Path(__file__).resolve().parent
VERSIONS = "migrations/versions"
BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       d.adbin IS NOT NULL OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> ALL(%s)
"""
# Changes of type that keep every value the previous release reads and writes.
WIDENINGS = {
    ("smallint", "integer"),
    ("smallint", "bigint"),
    ("integer", "bigint"),
    ("character varying", "text"),
    ("real", "double precision"),
}


class PreviousReleaseError(CommandError):
    """The previous release cannot be found or read; the message says why and what to do."""


@dataclass(frozen=True)
class Release:
    name: str
    commit: str


@dataclass(frozen=True)
class Column:
    type: str
    not_null: bool
    has_default: bool


Tables = dict[str, dict[str, Column]]


@dataclass
class Finding:
    revision: str | None
    message: str

    def __str__(self) -> str:
        return f"revision {self.revision}: {self.message}" if self.revision else self.message


@dataclass
class PreviousReleaseReport:
    release: Release
    head: str
    new_revisions: list[str]
    exercise: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings


def git(*args: str, cwd: Path = PROJECT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PreviousReleaseError(f"git {' '.join(args)} failed: {done.stderr.strip().splitlines()[0]}")
    return done.stdout.strip()


def find(project: Path = PROJECT, script_location: Path = SCRIPT_LOCATION) -> Release:
    """The last v* tag reachable from HEAD and not on it; else the commit before the newest revision."""
    head = git("rev-parse", "HEAD", cwd=project)
    for tag in git("tag", "--merged", "HEAD", "--list", "v*", "--sort=-v:refname", cwd=project).split():
        commit = git("rev-parse", f"{tag}^{{commit}}", cwd=project)
        if commit != head:
            return Release(tag, commit)
    newest = Path(scripts(script_location)[-1].path).resolve()
    # A copy of migrations/ elsewhere: its newest revision is committed if the project has that file.
    if not newest.is_relative_to(project.resolve()):
        newest = project / VERSIONS / newest.name
    added = git("log", "--diff-filter=A", "--format=%H", "-1", "--", str(newest), cwd=project)
    if not added:  # not committed yet: the release before it is HEAD itself
        return Release(f"HEAD ({head[:12]}, before {newest.name})", head)
    if git("rev-parse", "--is-shallow-repository", cwd=project) == "true":
        raise PreviousReleaseError(
            "this clone is shallow and has no v* tag: the previous release cannot be found. "
            "Fetch them: git fetch --tags --unshallow (on GitHub Actions: actions/checkout's fetch-depth: 0)"
        )
    parent = git("rev-parse", "--verify", "--quiet", f"{added}^", cwd=project)
    return Release(f"{parent[:12]} (the commit before {newest.name} was added)", parent)


def resolve(ref: str, project: Path = PROJECT) -> Release:
    return Release(ref, git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=project))


def extract(release: Release, into: Path, project: Path = PROJECT, *paths: str) -> Path:
    """The release's tree (or only `paths` of it) written into `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", release.commit, *paths],
        cwd=project,
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise PreviousReleaseError(f"git archive {release.commit} failed: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def released_head(release: Release, project: Path = PROJECT) -> str:
    """The head revision of the release."""
    with tempfile.TemporaryDirectory(prefix="previous-release-") as directory:
        return head_of(extract(release, Path(directory), project, VERSIONS) / VERSIONS)


def head_of(versions: Path) -> str:
    """The head revision of a tree's revision files, read from their source, not imported."""
    down: dict[str, object] = {}
    for path in versions.glob("*.py"):
        tree = parsed(path)
        revision, down_revision = (assigned(tree, name) for name in ("revision", "down_revision"))
        if isinstance(revision, ast.Constant):
            down[str(revision.value)] = (
                down_revision.value if isinstance(down_revision, ast.Constant) else None
            )
    heads = set(down) - {str(value) for value in down.values() if value}
    if len(heads) != 1:
        raise PreviousReleaseError(f"{versions} has {len(heads)} heads, not one: {', '.join(sorted(heads))}")
    return heads.pop()


def tables(url: URL) -> Tables:
    with psycopg.connect(conninfo(url)) as conn:
        rows = conn.execute(COLUMNS, (list(MIGRATION_TABLES),)).fetchall()
    found: Tables = {}
    for table, column, type_, not_null, has_default in rows:
        found.setdefault(table, {})[column] = Column(type_, not_null, has_default)
    return found


def widened(old: str, new: str) -> bool:
    """Whether every value of type `old` is a value of type `new`, unchanged."""
    if old == new or (old.split("(")[0], new) in WIDENINGS:
        return True
    old_length, new_length = (re.fullmatch(r"character varying\((\d+)\)", type_) for type_ in (old, new))
    if old_length is None:
        return False
    return new == "character varying" or (new_length is not None and int(new_length[1]) >= int(old_length[1]))


def check(
    server: URL,
    release: Release | None = None,
    script_location: Path = SCRIPT_LOCATION,
    project: Path = PROJECT,
) -> PreviousReleaseReport:
    release = release or find(project, script_location)
    ours = scripts(script_location)
    order = [script.revision for script in ours]
    with tempfile.TemporaryDirectory(prefix="previous-release-") as directory:
        tree = extract(release, Path(directory), project)
        old_head = head_of(tree / VERSIONS)
        if old_head not in order:
            raise PreviousReleaseError(
                f"the previous release {release.name} is at revision {old_head}, which this history does not "
                "have: a revision that was released must never be removed"
            )
        new = order[order.index(old_head) + 1 :]
        report = PreviousReleaseReport(release, old_head, new)
        with scratch_database(server, prefix="gate") as url:
            config = alembic_config(url, script_location=script_location)
            command.upgrade(config, old_head)
            before = old = tables(url)
            removed_by: dict[str, str] = {}
            for script in ours[order.index(old_head) + 1 :]:
                command.upgrade(config, script.revision)
                after = tables(url)
                for thing in removals(before, after):
                    removed_by[thing] = script.revision
                before = after
            probe = run_probe(tree, url)
        report.exercise = probe.get("exercise", "")
        report.findings = findings(release, probe, old, before, removed_by, ours)
    return report


def removals(before: Tables, after: Tables) -> list[str]:
    gone = [table for table in before if table not in after]
    gone += [
        f"{table}.{column}"
        for table, columns in before.items()
        if table in after
        for column in columns
        if column not in after[table]
    ]
    return gone


def run_probe(tree: Path, url: URL) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env[ENV_VAR] = url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", BOOT, str(HERE / "release_probe.py"), str(HERE / "exercise.py")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PreviousReleaseError(f"the previous release's code could not be run: {last}")
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def findings(
    release: Release,
    probe: dict[str, Any],
    old: Tables,
    head: Tables,
    removed_by: dict[str, str],
    ours: list[Any],
) -> list[Finding]:
    name = f"the previous release ({release.name})"
    if "error" in probe:
        return [Finding(None, f"{name} could not be loaded: {probe['error']}")]
    found = [
        Finding(None, f"{name}, run against the new head, failed: {failure}") for failure in probe["failures"]
    ]
    uses: dict[str, Any] = probe["uses"]
    contracts = {script.revision: getattr(script.module, "contract", None) for script in ours}
    for thing, revision in removed_by.items():
        table, _, column = thing.partition(".")
        user = uses.get(table)
        what = f"column {thing}" if column else f"table {thing}"
        declared = contracts.get(revision)
        if user is not None and (not column or column in user["columns"]):
            owner = f"{user['owner']}.{column}" if column else user["owner"]
            found.append(
                Finding(
                    revision,
                    f"removes {what}, which {name} still uses ({owner}). A drop or rename is allowed only as "
                    "a declared contract step in a later release than the one that stopped using it: ship a "
                    "release whose code no longer uses it first, then drop it in the next, "
                    'declaring contract = "why" in that revision',
                )
            )
        elif not (isinstance(declared, str) and declared.strip()):
            found.append(
                Finding(
                    revision,
                    f"removes {what} (a drop or a rename loses what it held) without declaring a contract "
                    'step: add contract = "why" to the revision, once no released code uses it',
                )
            )
    for table, user in uses.items():
        for column, mapping in user["columns"].items():
            thing = f"{table}.{column}"
            if thing in removed_by or table in removed_by:
                continue
            was, now = old.get(table, {}).get(column), head.get(table, {}).get(column)
            if now is None:
                found.append(
                    Finding(None, f"{name} maps {thing} ({user['owner']}): the new head has no such column")
                )
            elif was is not None and not widened(was.type, now.type):
                found.append(
                    Finding(
                        None,
                        f"{name} maps {thing} as {was.type} ({user['owner']}); the new head makes it "
                        f"{now.type}, which not every value it reads and writes fits: widen, or add a new "
                        "column instead",
                    )
                )
            elif now.not_null and not now.has_default and mapping["nullable"]:
                found.append(
                    Finding(None, f"{name} may write NULL to {thing} ({user['owner']}), now NOT NULL")
                )
        for column, now in head.get(table, {}).items():
            if column not in user["columns"] and now.not_null and not now.has_default:
                found.append(
                    Finding(
                        None,
                        f"the new head's {table}.{column} is NOT NULL without a default, and {name} inserts "
                        f"into {table} without it ({user['owner']}): give it a default, or make it NOT NULL "
                        "in a later release",
                    )
                )
    return found
