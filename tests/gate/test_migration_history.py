"""History integrity: the revisions are one line, each recorded unchanged, each reversible or marked."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import pytest
from alembic.script import Script
from alembic.util import CommandError

from migrations import SCRIPT_LOCATION
from migrations.history import (
    MANIFEST,
    UPDATE,
    chain_problems,
    downgrade_problem,
    main,
    manifest_problems,
    problems,
    scripts,
    write_manifest,
)
from tests.helpers.copies import add_revision, copy_migrations

pytestmark = pytest.mark.migrations

HEAD = scripts(SCRIPT_LOCATION)[-1].revision


def test_every_revision_is_recorded_unchanged_in_the_manifest() -> None:
    found = manifest_problems(SCRIPT_LOCATION)
    assert not found, "\n".join(found)


def test_the_revisions_form_one_line_from_base_to_a_single_head() -> None:
    found = chain_problems(SCRIPT_LOCATION)
    assert not found, "\n".join(found)


def test_every_downgrade_undoes_its_upgrade_or_its_revision_is_marked_irreversible() -> None:
    found = [downgrade_problem(Path(script.path)) for script in scripts(SCRIPT_LOCATION)]
    assert not any(found), "\n".join(filter(None, found))


def test_the_check_command_passes_on_this_history_and_rejects_unknown_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check"]) == 0
    assert main(["verify"]) == 2
    assert capsys.readouterr().err.strip() == "usage: python -m migrations.history {check|update}"


def test_an_edited_revision_is_reported_by_the_manifest_check(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    edited = Path(scripts(copy)[0].path)
    edited.write_text(edited.read_text().replace("title ~ '\\\\S'", "length(title) > 0"))
    [problem] = manifest_problems(copy)
    assert problem.startswith(f"{edited.name} was edited after it was recorded in {MANIFEST}"), problem
    assert f"git checkout -- migrations/versions/{edited.name}" in problem
    assert problem.endswith(f"only if it never left your machine: {UPDATE}")


def test_a_removed_revision_is_reported_with_the_command_that_restores_it(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    head = Path(scripts(copy)[-1].path)
    head.unlink()
    assert manifest_problems(copy) == [
        f"{head.name} (revision {HEAD}) is recorded in {MANIFEST} but was removed; a revision that may "
        f"have been applied must stay: git checkout -- migrations/versions/{head.name}"
    ]


def test_an_unrecorded_revision_is_reported_until_the_update_command_records_it(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    added = add_revision(
        copy, "0a1b2c3d4e5f", HEAD, upgrade="op.execute('SELECT 1')", downgrade="op.execute('SELECT 1')"
    )
    found = manifest_problems(copy)
    assert found == [
        f"{added.name} (revision 0a1b2c3d4e5f) is not recorded in {MANIFEST}; "
        f"once reviewed, record it: {UPDATE}"
    ]
    write_manifest(copy)
    assert manifest_problems(copy) == []


def test_manifest_lines_in_another_order_than_the_history_are_reported_as_a_reordering(
    tmp_path: Path,
) -> None:
    copy = copy_migrations(tmp_path)
    manifest = copy / MANIFEST
    header = [line for line in manifest.read_text().splitlines() if line.startswith("#")]
    lines = [line for line in manifest.read_text().splitlines() if not line.startswith("#")]
    manifest.write_text("\n".join([*header, *reversed(lines)]) + "\n")
    [problem] = manifest_problems(copy)
    assert problem.startswith(f"the revisions were reordered: {MANIFEST} records ")
    assert Path(scripts(copy)[0].path).name in problem


def test_revisions_whose_down_revisions_were_swapped_are_reported_as_reordered(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    first, second, *rest = scripts(copy)

    def point(script: Script, new: str | None) -> None:
        path = Path(script.path)
        source = re.sub(r"^down_revision\b.*$", f"down_revision = {new!r}", path.read_text(), flags=re.M)
        path.write_text(source)

    # The second revision now comes first, and whatever followed the second now follows the first.
    point(first, second.revision)
    point(second, None)
    if rest:
        point(rest[0], first.revision)
    recorded = [Path(script.path).name for script in (first, second, *rest)]
    chained = [Path(script.path).name for script in (second, first, *rest)]
    assert [Path(script.path).name for script in scripts(copy)] == chained
    [problem] = manifest_problems(copy)
    assert problem == (
        f"the revisions were reordered: {MANIFEST} records {', '.join(recorded)} but their "
        f"down_revisions chain {', '.join(chained)}; restore what changed: git checkout -- migrations/"
    )


def test_a_manifest_with_merge_conflict_markers_is_reported_with_how_to_resolve_it(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    manifest = copy / MANIFEST
    manifest.write_text(manifest.read_text() + "<<<<<<< HEAD\n=======\n>>>>>>> other-branch\n")
    assert manifest_problems(copy) == [
        f"{MANIFEST} has a line that is not 'file revision hash fingerprint': '<<<<<<< HEAD'. After a merge "
        f"conflict, give your revision the other branch's head as its down_revision, then run: {UPDATE}"
    ]


def test_two_heads_are_reported_and_not_recorded(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    base = scripts(copy)[0].revision
    add_revision(
        copy, "0a1b2c3d4e5f", base, upgrade="op.execute('SELECT 1')", downgrade="op.execute('SELECT 1')"
    )
    [problem] = chain_problems(copy)
    assert problem.startswith(f"the history has 2 heads (0a1b2c3d4e5f, {HEAD}), it must have one")
    with pytest.raises(CommandError, match="not recording a history that is not one line"):
        write_manifest(copy)


def test_a_merge_revision_is_reported(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    base = scripts(copy)[0].revision
    add_revision(
        copy, "0a1b2c3d4e5f", base, upgrade="op.execute('SELECT 1')", downgrade="op.execute('SELECT 1')"
    )
    merge = add_revision(copy, "6a7b8c9d0e1f", ("0a1b2c3d4e5f", HEAD))
    assert chain_problems(copy) == [
        f"{merge.name} merges 0a1b2c3d4e5f, {HEAD}; merges are not allowed: give the newer revision "
        "one down_revision, the other branch's head"
    ]
    assert problems(copy) == chain_problems(copy)


def test_a_downgrade_that_only_passes_is_reported(tmp_path: Path) -> None:
    added = add_revision(copy_migrations(tmp_path), "0a1b2c3d4e5f", HEAD, upgrade="op.execute('SELECT 1')")
    assert downgrade_problem(added) == (
        f"{added.name} has no downgrade that undoes its upgrade: write one, or, if it cannot be undone, "
        'add irreversible = "why" and make downgrade raise CommandError(irreversible)'
    )


def test_a_revision_marked_irreversible_with_a_reason_and_a_raising_downgrade_is_accepted(
    tmp_path: Path,
) -> None:
    added = add_revision(
        copy_migrations(tmp_path),
        "0a1b2c3d4e5f",
        HEAD,
        upgrade="op.execute('DELETE FROM alembic_seed_rows')",
        downgrade="raise CommandError(irreversible)",
        preamble='irreversible = "the seed bookkeeping it deletes cannot be rebuilt"',
    )
    assert downgrade_problem(added) is None


@pytest.mark.parametrize(
    ("preamble", "downgrade", "complaint"),
    [
        (
            'irreversible = "  "',
            "raise CommandError(irreversible)",
            "is marked irreversible without a reason",
        ),
        ('irreversible = "data is lost"', "pass", "is marked irreversible, so its downgrade must only raise"),
        ("", "raise CommandError('no')", "has no downgrade that undoes its upgrade"),
    ],
    ids=["blank reason", "marked but steps past", "raises unmarked"],
)
def test_an_irreversible_revision_needs_both_a_reason_and_a_raising_downgrade(
    tmp_path: Path, preamble: str, downgrade: str, complaint: str
) -> None:
    added = add_revision(
        copy_migrations(tmp_path), "0a1b2c3d4e5f", HEAD, downgrade=downgrade, preamble=preamble
    )
    problem = downgrade_problem(added)
    assert problem is not None
    assert problem.startswith(f"{added.name} {complaint}")


def test_two_files_declaring_one_revision_id_are_reported_as_a_duplicate_naming_both(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    head = Path(scripts(copy)[-1].path)
    again = head.with_name(f"2026_12_01_{HEAD}_copied_by_hand.py")
    again.write_bytes(head.read_bytes())

    expected = [
        f"duplicate revision id {HEAD}, declared by {head.name} and {again.name}: give the newer file an id "
        "of its own (python -c 'import uuid; print(uuid.uuid4().hex[-12:])') and, as its down_revision, "
        f"the head, then run: {UPDATE}"
    ]
    assert chain_problems(copy) == expected
    assert problems(copy) == expected


def test_a_utf8_byte_order_mark_is_neither_an_edit_nor_a_conflict(tmp_path: Path) -> None:
    copy = copy_migrations(tmp_path)
    recorded = Path(scripts(copy)[0].path)
    added = add_revision(
        copy, "0a1b2c3d4e5f", HEAD, upgrade="op.execute('SELECT 1')", downgrade="op.execute('SELECT 1')"
    )
    for path in (recorded, added, copy / MANIFEST):  # as an editor on Windows may save them
        path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())

    assert problems(copy) == [
        f"{added.name} (revision 0a1b2c3d4e5f) is not recorded in {MANIFEST}; "
        f"once reviewed, record it: {UPDATE}"
    ]
    write_manifest(copy)
    assert problems(copy) == []
