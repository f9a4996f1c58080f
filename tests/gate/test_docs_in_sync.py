"""Docs in sync: the README's ER diagram is the one the models generate."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, ForeignKey, MetaData, Numeric, Table

from migrations import er_diagram
from migrations.er_diagram import BLOCK, README, mermaid, with_diagram
from models import metadata

pytestmark = pytest.mark.migrations

REGENERATE = "uv run python -m migrations.er_diagram"


def test_the_readme_er_diagram_is_the_one_the_models_generate() -> None:
    readme = README.read_text()
    diff = "".join(difflib.unified_diff(readme.splitlines(True), with_diagram(readme).splitlines(True)))
    assert not diff, f"README.md's ER diagram is stale; regenerate it: {REGENERATE}\n{diff}"


def test_the_diagram_draws_each_table_once_and_the_join_table_as_many_per_student_and_course() -> None:
    diagram = mermaid(metadata)
    for table in metadata.tables.values():
        assert diagram.count(f"  {table.name} {{\n") == 1
        for column in table.columns:
            assert f" {column.name}" in diagram
    assert "  students ||--o{ student_course : student_id\n" in diagram
    assert "  courses ||--o{ student_course : course_id\n" in diagram


def test_a_model_change_shows_in_the_diagram_with_its_cardinality() -> None:
    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    Table(
        "transcripts",
        changed,
        Column("student_id", BigInteger, ForeignKey("students.id"), primary_key=True),
        Column("mentor_id", BigInteger, ForeignKey("students.id"), nullable=True),
        Column("grade_average", Numeric(4, 2)),
    )
    diagram = mermaid(changed)
    assert diagram != mermaid(metadata)
    assert '    NUMERIC(4_2) grade_average "nullable"\n' in diagram
    assert "  students ||--o| transcripts : student_id\n" in diagram
    assert "  students |o--o{ transcripts : mentor_id\n" in diagram


def test_the_regenerate_command_rewrites_only_the_diagram_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = README.read_text().replace("TEXT title", "VARCHAR title")
    readme = tmp_path / "README.md"
    readme.write_text(stale)
    monkeypatch.setattr(er_diagram, "README", readme)
    assert er_diagram.main() == 0
    regenerated = readme.read_text()
    assert "VARCHAR title" not in regenerated
    assert "TEXT title" in regenerated
    assert BLOCK.sub("", regenerated) == BLOCK.sub("", stale)


def test_a_readme_without_the_markers_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no diagram here\n")
    monkeypatch.setattr(er_diagram, "README", readme)
    assert er_diagram.main() == 1
    assert capsys.readouterr().err == (
        "error: README.md has no <!-- er-diagram:start --> ... <!-- er-diagram:end --> block\n"
    )
    assert readme.read_text() == "# no diagram here\n"
