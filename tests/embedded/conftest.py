"""Fixtures for the embedded server's tests: checkouts and OS users of their own, all removed at the end."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.checkouts import (
    NOT_ROOT,
    ROOT,
    Intruder,
    discard_checkout,
    linked_psql,
    make_checkout,
    os_user,
    run_in,
)


@pytest.fixture(scope="session")
def open_directory() -> Iterator[Path]:
    """A directory every local user may pass through (0755), unlike pytest's 0700 temporary root."""
    path = Path(tempfile.mkdtemp(prefix="embedded-")).resolve()
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def intruder(open_directory: Path) -> Iterator[Intruder]:
    """Another local OS user, with psql: what a hostile user of the machine has."""
    if not ROOT:
        pytest.skip(NOT_ROOT)
    tools = open_directory / "tools"
    psql = linked_psql(tools)
    with os_user(f"intruder-{uuid.uuid4().hex[:6]}") as name:
        yield Intruder(name, psql)


@pytest.fixture(scope="session")
def pair(open_directory: Path) -> Iterator[tuple[Path, Path]]:
    """Two checkouts side by side where anyone may pass, each with its server started."""
    checkouts = [make_checkout(open_directory / f"{name}-{uuid.uuid4().hex[:6]}") for name in "ab"]
    try:
        for checkout in checkouts:
            result = run_in(checkout, "migrations.database", "url")
            assert result.returncode == 0, result.output
        yield checkouts[0], checkouts[1]
    finally:
        for checkout in checkouts:
            discard_checkout(checkout)


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A temporary directory with a short path: a socket path may not exceed 107 characters, and
    pytest's own (longer under pytest-xdist) leaves a clone's too little room."""
    path = Path(tempfile.mkdtemp(prefix="e-")).resolve()
    yield path
    shutil.rmtree(path, ignore_errors=True)
