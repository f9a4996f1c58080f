"""The first run on a fresh clone: eight at once, inside a 0700 directory, under a locale the machine lacks.

One first run (eight processes racing) serves every test here; the last one deletes it.
"""

from __future__ import annotations

import pwd
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrations.database import processes, server_user
from migrations.database.embedded import binaries
from tests.helpers.checkouts import (
    EMBEDDED_LEG_ONLY,
    ROOT,
    ROSTER,
    ancestry,
    connect_to,
    data_of,
    discard_checkout,
    identity_of,
    make_checkout,
    modes_under,
    postmaster_of,
    run_in,
    shared_memory_left,
    shared_memory_mapped_by,
)
from tests.helpers.forked_cli import Finished, start_in_checkout

pytestmark = EMBEDDED_LEG_ONLY

FIRST_RUNS = 8
# A locale no machine has: initdb used to inherit LANG and fail on it.
MISSING_LOCALE = {"LANG": "xx_XX.UTF-8", "LC_ALL": "xx_XX.UTF-8"}


@dataclass
class FirstRun:
    checkout: Path
    results: list[Finished]
    ancestry_before: list[tuple[str, int, int, int, bytes]]
    wheel_before: dict[str, tuple[int, int, int]]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    private = tmp_path_factory.mktemp("private")
    private.chmod(0o700)
    checkout = make_checkout(private / "clone")
    before = FirstRun(checkout, [], ancestry(checkout), modes_under(binaries().parents[1]))
    try:
        with tempfile.TemporaryDirectory() as outputs:
            racing = [
                start_in_checkout(checkout, "migrations", workdir=Path(outputs), env=MISSING_LOCALE)
                for _ in range(FIRST_RUNS)
            ]
            before.results = [process.finish(timeout=180) for process in racing]
        yield before
    finally:
        discard_checkout(checkout)


def test_eight_first_runs_at_once_on_a_fresh_clone_all_exit_0_and_print_the_roster(
    first_run: FirstRun,
) -> None:
    for result in first_run.results:
        assert (result.returncode, result.stdout) == (0, ROSTER), result.output
        assert "Traceback" not in result.output


def test_the_first_run_changes_no_directory_outside_the_checkout_nor_the_wheels_files(
    first_run: FirstRun,
) -> None:
    assert ancestry(first_run.checkout) == first_run.ancestry_before
    assert first_run.ancestry_before[-1][1] & 0o777 == 0o700  # a private directory, still private
    assert modes_under(binaries().parents[1]) == first_run.wheel_before


def test_under_a_missing_locale_the_database_collates_by_postgresqls_builtin_c_utf8(
    first_run: FirstRun,
) -> None:
    with connect_to(first_run.checkout) as conn:
        row = conn.execute(
            "SELECT datlocprovider, datlocale, datcollate FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        lowered = conn.execute("SELECT lower('ÄÖÜ'), 'a' < 'B'").fetchone()

    assert row == ("b", "C.UTF-8", "C")
    assert lowered == ("äöü", False)  # Unicode case mapping; code point order


def test_the_server_runs_as_the_checkouts_own_user_and_never_with_group_0(first_run: FirstRun) -> None:
    running = identity_of(postmaster_of(first_run.checkout).pid)

    assert 0 not in running["Uid"] + running["Gid"] + running["Groups"]
    if ROOT:
        account = server_user.user_name(first_run.checkout)
        assert running["Uid"][0] == pwd.getpwnam(account).pw_uid
        assert running["Groups"] in ([], running["Gid"][:1])


def test_delete_stops_the_server_and_leaves_no_process_os_user_or_shared_memory(first_run: FirstRun) -> None:
    checkout = first_run.checkout
    segments = shared_memory_mapped_by(postmaster_of(checkout).pid)

    result = run_in(checkout, "migrations.database", "delete")

    assert result.returncode == 0, result.output
    assert not (checkout / ".pgdata").exists()
    assert processes.servers_in(data_of(checkout)) == []
    assert segments
    assert shared_memory_left(segments) == set()
    if ROOT:
        with pytest.raises(KeyError):
            pwd.getpwnam(server_user.user_name(checkout))
