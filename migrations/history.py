"""The migration history's integrity: one line of revisions, each recorded in a manifest.

``migrations/history.sum`` lists every revision, base first: its file, its revision id,
a hash of the previous line's hash and the file's bytes (as in Atlas's atlas.sum), and the
fingerprint of the schema upgrading to it builds (catalog.fingerprint: the same on PostgreSQL
15 to 18). What a revision builds must never change either, even when its file does not (a
helper it calls changed): ``check`` rebuilds each one on a scratch database and compares.
A revision that was applied somewhere must never change, so editing, removing or
reordering a recorded file fails the check; and two branches that each add a revision
both change the manifest's last line, so git makes them resolve it rather than merging
two heads unnoticed.

    uv run python -m migrations.history check    # what the tests check (builds each revision)
    uv run python -m migrations.history update   # record a new, reviewed revision (builds it)

A revision whose downgrade cannot undo it says so: a module attribute
``irreversible = "why"``, and a downgrade that raises (``raise CommandError(irreversible)``)
instead of letting a downgrade step past it while leaving its changes in place.
"""

from __future__ import annotations

import ast
import codecs
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL

from migrations import SCRIPT_LOCATION
from migrations.catalog import fingerprint
from migrations.database.scratch import ensure_server_url
from migrations.fingerprints import built_catalogs

MANIFEST = "history.sum"
UPDATE = "uv run python -m migrations.history update"
HEADER = (
    "# Every revision, base first: file, revision id, sha256(previous line's hash + file bytes),\n"
    "# sha256 of the catalog it builds.\n"
    f"# Never edit by hand; after adding a revision run: {UPDATE}\n"
)


@dataclass(frozen=True)
class Entry:
    file: str
    revision: str
    digest: str
    fingerprint: str = ""  # a manifest written before fingerprints has none

    def __str__(self) -> str:
        return " ".join(filter(None, (self.file, self.revision, self.digest, self.fingerprint)))


def scripts(script_location: Path) -> list[Script]:
    """The revisions, base first (alembic walks from the heads down)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))


def chained(previous: str, path: Path) -> str:
    # A checkout that turns newlines into CRLF (git's autocrlf on Windows), or an editor that adds
    # a UTF-8 byte order mark, has not edited anything: Python reads the file the same.
    content = path.read_bytes().removeprefix(codecs.BOM_UTF8).replace(b"\r\n", b"\n")
    return hashlib.sha256(previous.encode() + content).hexdigest()


def entries(script_location: Path) -> list[Entry]:
    """What the manifest should say about the revisions on disk."""
    recorded: list[Entry] = []
    for script in scripts(script_location):
        path = Path(script.path)
        previous = recorded[-1].digest if recorded else ""
        recorded.append(Entry(path.name, script.revision, chained(previous, path)))
    return recorded


def read_manifest(script_location: Path) -> list[Entry]:
    lines = (script_location / MANIFEST).read_text(encoding="utf-8-sig").splitlines()
    fields = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    malformed = [" ".join(line) for line in fields if len(line) not in (3, 4)]
    if malformed:  # most likely git's conflict markers: two branches each added a revision
        raise CommandError(
            f"{MANIFEST} has a line that is not 'file revision hash fingerprint': {malformed[0]!r}. After "
            "a merge conflict, give your revision the other branch's head as its down_revision, then run: "
            f"{UPDATE}"
        )
    return [Entry(*line) for line in fields]


def write_manifest(script_location: Path, fingerprints: dict[str, str] | None = None) -> None:
    problems = chain_problems(script_location)
    if problems:
        raise CommandError("not recording a history that is not one line: " + "; ".join(problems))
    fingerprints = fingerprints or {}
    lines = "".join(
        f"{Entry(entry.file, entry.revision, entry.digest, fingerprints.get(entry.revision, ''))}\n"
        for entry in entries(script_location)
    )
    (script_location / MANIFEST).write_text(HEADER + lines)


def built_fingerprints(script_location: Path, server: URL) -> dict[str, str]:
    """Each revision's fingerprint, built on a scratch database on `server`."""
    revisions = [script.revision for script in scripts(script_location)]
    return {
        revision: fingerprint(lines)
        for revision, lines in built_catalogs(server, revisions, script_location).items()
    }


def fingerprint_problems(script_location: Path, server: URL) -> list[str]:
    """Each recorded revision whose fingerprint is missing, or differs from what it builds now."""
    recorded = read_manifest(script_location)
    built = built_fingerprints(script_location, server)
    problems = []
    for entry in recorded:
        now = built.get(entry.revision)
        if now is None:
            continue  # removed: manifest_problems says so
        if not entry.fingerprint:
            problems.append(
                f"{entry.file} (revision {entry.revision}) has no schema fingerprint in {MANIFEST}; "
                f"record it: {UPDATE}"
            )
        elif entry.fingerprint != now:
            problems.append(
                f"{entry.file} (revision {entry.revision}) no longer builds the schema recorded in "
                f"{MANIFEST} (fingerprint {entry.fingerprint[:12]}, now {now[:12]}), though a database may "
                "already be at it: restore what changed what it builds (a helper it calls?), and make the "
                f"change in a new revision; only if it never left your machine: {UPDATE}"
            )
    return problems


def manifest_problems(script_location: Path) -> list[str]:
    """What differs between the manifest and the revision files, each with its fix."""
    manifest = script_location / MANIFEST
    if not manifest.exists():
        return [f"{manifest} is missing; create it: {UPDATE}"]
    try:
        recorded = read_manifest(script_location)
    except CommandError as error:
        return [str(error)]
    on_disk = {Path(script.path).name: script for script in scripts(script_location)}
    recorded_files = {entry.file for entry in recorded}
    problems = [
        f"{entry.file} (revision {entry.revision}) is recorded in {MANIFEST} but was removed; "
        f"a revision that may have been applied must stay: git checkout -- migrations/versions/{entry.file}"
        for entry in recorded
        if entry.file not in on_disk
    ]
    problems += [
        f"{name} (revision {script.revision}) is not recorded in {MANIFEST}; "
        f"once reviewed, record it: {UPDATE}"
        for name, script in on_disk.items()
        if name not in recorded_files
    ]
    recorded_order = [entry.file for entry in recorded if entry.file in on_disk]
    history_order = [name for name in on_disk if name in recorded_files]
    if recorded_order != history_order:
        # Hashes chain in the recorded order, so in another order every one differs: say only this.
        return [
            *problems,
            f"the revisions were reordered: {MANIFEST} records {', '.join(recorded_order)} but their "
            f"down_revisions chain {', '.join(history_order)}; "
            "restore what changed: git checkout -- migrations/",
        ]
    previous = ""
    for entry in recorded:
        script = on_disk.get(entry.file)
        if script is not None and script.revision != entry.revision:
            problems.append(
                f"{entry.file} now says revision {script.revision}, recorded as {entry.revision}; "
                f"restore it: git checkout -- migrations/versions/{entry.file}"
            )
        elif script is not None and chained(previous, Path(script.path)) != entry.digest:
            problems.append(
                f"{entry.file} was edited after it was recorded in {MANIFEST} (its hash differs). A database "
                f"may already have run it: undo the edit (git checkout -- migrations/versions/{entry.file}) "
                f"and make the change in a new revision; only if it never left your machine: {UPDATE}"
            )
        previous = entry.digest
    return problems


def chain_problems(script_location: Path) -> list[str]:
    """Why the revisions are not one line from base to a single head, if they are not."""
    duplicates = duplicate_revision_ids(script_location)
    if duplicates:  # alembic would keep one file of each id and report misleading heads
        return duplicates
    config = Config()
    config.set_main_option("script_location", str(script_location))
    try:
        directory = ScriptDirectory.from_config(config)
        heads = directory.get_heads()
        every = list(directory.walk_revisions())
    except CommandError as error:  # alembic's RevisionError is a CommandError: a missing down_revision
        return [f"alembic cannot read the history: {error}"]
    problems = [
        f"{Path(script.path).name} merges {', '.join(script.down_revision)}; merges are not allowed: "
        "give the newer revision one down_revision, the other branch's head"
        for script in every
        if isinstance(script.down_revision, tuple | list) and len(script.down_revision) > 1
    ]
    if len(heads) != 1:
        problems.append(
            f"the history has {len(heads)} heads ({', '.join(sorted(heads))}), it must have one: set the "
            f"newer revision's down_revision to the other head, then run: {UPDATE}"
        )
    return problems


def parsed(path: Path) -> ast.Module:
    # From bytes, so that Python's own rules decode it (a UTF-8 byte order mark included).
    return ast.parse(path.read_bytes(), filename=str(path))


def assigned(tree: ast.Module, name: str) -> ast.expr | None:
    """What a module-level assignment gives `name`, if the module has one."""
    return next(
        (
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            and any(
                isinstance(target, ast.Name) and target.id == name
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ),
        None,
    )


def duplicate_revision_ids(script_location: Path) -> list[str]:
    """Each revision id that more than one file declares, naming the files."""
    files_of: dict[str, list[str]] = {}
    for path in sorted((script_location / "versions").glob("*.py")):
        revision = assigned(parsed(path), "revision")
        if isinstance(revision, ast.Constant) and isinstance(revision.value, str):
            files_of.setdefault(revision.value, []).append(path.name)
    return [
        f"duplicate revision id {revision}, declared by {' and '.join(files)}: give the newer file an "
        f"id of its own (python -c 'import uuid; print(uuid.uuid4().hex[-12:])') and, as its down_revision, "
        f"the head, then run: {UPDATE}"
        for revision, files in files_of.items()
        if len(files) > 1
    ]


def downgrade_problem(path: Path) -> str | None:
    """Why this revision's downgrade does not undo its upgrade, if it does not."""
    tree = parsed(path)
    marker = assigned(tree, "irreversible")
    function = next(
        (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "downgrade"), None
    )
    body = [
        statement
        for statement in (function.body if function else [])
        if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
    ]
    raises_only = len(body) == 1 and isinstance(body[0], ast.Raise)
    if marker is not None:
        if not (isinstance(marker, ast.Constant) and isinstance(marker.value, str) and marker.value.strip()):
            return (
                f"{path.name} is marked irreversible without a reason: "
                'irreversible = "why it cannot be undone"'
            )
        if not raises_only:
            return (
                f"{path.name} is marked irreversible, so its downgrade must only raise "
                "(raise CommandError(irreversible)), not step past it leaving its changes in place"
            )
        return None
    if all(isinstance(statement, ast.Pass) for statement in body) or raises_only:
        return (
            f"{path.name} has no downgrade that undoes its upgrade: write one, or, if it cannot be undone, "
            'add irreversible = "why" and make downgrade raise CommandError(irreversible)'
        )
    return None


def problems(script_location: Path = SCRIPT_LOCATION) -> list[str]:
    found = chain_problems(script_location)
    if found:  # the manifest and the downgrades are read along the chain
        return found
    downgrades = (downgrade_problem(Path(script.path)) for script in scripts(script_location))
    return [*manifest_problems(script_location), *(problem for problem in downgrades if problem)]


def main(arguments: list[str]) -> int:
    try:
        if arguments == ["update"]:
            write_manifest(SCRIPT_LOCATION, built_fingerprints(SCRIPT_LOCATION, ensure_server_url()))
            print(f"recorded {len(entries(SCRIPT_LOCATION))} revisions in {SCRIPT_LOCATION / MANIFEST}")
            return 0
        if arguments == ["check"]:
            found = problems() or fingerprint_problems(SCRIPT_LOCATION, ensure_server_url())
            for problem in found:
                print(problem, file=sys.stderr)
            return 1 if found else 0
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("usage: python -m migrations.history {check|update}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
