"""Temporary copies of migrations/, to break on purpose: the real revision files stay untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

from migrations import ALEMBIC_INI, SCRIPT_LOCATION


def copy_migrations(tmp_path: Path) -> Path:
    """A copy of migrations/ (env.py, revisions, manifest), usable as a script_location."""
    copy = tmp_path / "migrations"
    shutil.copytree(SCRIPT_LOCATION, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def copy_project(tmp_path: Path) -> Path:
    """A copy of alembic.ini beside a copy of migrations/; the copied alembic.ini."""
    copy_migrations(tmp_path)
    return Path(shutil.copy(ALEMBIC_INI, tmp_path / "alembic.ini"))


def add_revision(
    script_location: Path,
    revision: str,
    down_revision: str | tuple[str, ...] | None,
    *,
    upgrade: str = "pass",
    downgrade: str = "pass",
    preamble: str = "",
) -> Path:
    """Write a revision file into the copy; `upgrade` and `downgrade` are one-line bodies."""
    path = script_location / "versions" / f"2026_12_01_{revision}_added_in_a_test.py"
    path.write_text(
        "from alembic import op\n"
        "from alembic.util import CommandError\n\n"
        f"revision = {revision!r}\ndown_revision = {down_revision!r}\n"
        f"branch_labels = None\ndepends_on = None\n{preamble}\n\n"
        f"def upgrade() -> None:\n    {upgrade}\n\n\n"
        f"def downgrade() -> None:\n    {downgrade}\n"
    )
    return path
