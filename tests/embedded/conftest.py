"""Fixtures for the embedded server's tests: checkouts and OS users of their own, all removed at the end."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.checkouts import NOT_ROOT, ROOT, linked_psql, os_user


@pytest.fixture(scope="session")
def open_directory() -> Iterator[Path]:
    """A directory every local user may pass through (0755), unlike pytest's 0700 temporary root."""
    path = Path(tempfile.mkdtemp(prefix="embedded-")).resolve()
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Intruder:
    name: str
    psql: Path


@pytest.fixture(scope="session")
def intruder(open_directory: Path) -> Iterator[Intruder]:
    """Another local OS user, with psql: what a hostile user of the machine has."""
    if not ROOT:
        pytest.skip(NOT_ROOT)
    tools = open_directory / "tools"
    psql = linked_psql(tools)
    with os_user(f"intruder-{uuid.uuid4().hex[:6]}") as name:
        yield Intruder(name, psql)
