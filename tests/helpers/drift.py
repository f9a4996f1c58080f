"""The drift command run as a real process, and the change made by hand its tests look for."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL

from migrations.drift import SCRATCH_VAR
from tests.helpers.forked_cli import Finished, start_module

BY_HAND = "CREATE INDEX ix_students_name_by_hand ON students (name)"
INDEX_LINE = (
    "index students.ix_students_name_by_hand CREATE INDEX ix_students_name_by_hand ON public.students "
    "USING btree (name)"
)


def run_drift(url: URL, workdir: Path, scratch: URL, *args: str) -> Finished:
    return start_module(
        "migrations.drift",
        *args,
        url=url,
        workdir=workdir,
        env={SCRATCH_VAR: scratch.render_as_string(hide_password=False)},
    ).finish()
