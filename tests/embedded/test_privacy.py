"""Private: no other local user gets in, and no checkout reaches another checkout's server or data.

Two checkouts, A and B (conftest's `pair`), live where every user may pass (0755); only their
.pgdata/ is private.
An intruder, another OS user with psql, tries every way in it can reach.
"""

from __future__ import annotations

import contextlib
import pwd
import uuid
from pathlib import Path

import pytest

from migrations.database import processes, server_user
from tests.helpers.checkouts import (
    EMBEDDED_LEG_ONLY,
    NOT_ROOT,
    ROOT,
    ROSTER,
    Intruder,
    connect_to,
    data_of,
    identity_of,
    listening_tcp_ports,
    postmaster_of,
    run_in,
)

pytestmark = [EMBEDDED_LEG_ONLY, pytest.mark.skipif(not ROOT, reason=NOT_ROOT)]


def test_another_os_user_can_neither_connect_nor_run_copy_from_program(
    pair: tuple[Path, Path], intruder: Intruder, tmp_path: Path
) -> None:
    checkout, _ = pair
    marker = Path("/tmp") / f"intruded-{uuid.uuid4().hex}"
    copy = f"CREATE TEMP TABLE t (line text); COPY t FROM PROGRAM 'id > {marker}'"

    through_socket = intruder.run_sql(str(checkout / ".pgdata"), copy)
    tcp_ports = listening_tcp_ports(postmaster_of(checkout).pid)
    through_tcp = [intruder.run_sql("127.0.0.1", copy, port) for port in tcp_ports]

    assert through_socket.returncode != 0
    assert "Permission denied" in through_socket.stderr
    assert tcp_ports == [], "the embedded server listens on TCP"
    assert through_tcp == []
    assert not marker.exists()


def test_even_with_pgdata_opened_to_everyone_peer_authentication_refuses_another_user(
    pair: tuple[Path, Path], intruder: Intruder
) -> None:
    home = pair[0] / ".pgdata"
    home.chmod(0o755)
    try:
        refused = intruder.run_sql(str(home), "SELECT 1")
    finally:
        home.chmod(0o700)

    assert refused.returncode != 0
    assert 'Peer authentication failed for user "postgres"' in refused.stderr


def test_each_checkout_has_an_os_user_of_its_own_without_group_0_and_cannot_read_anothers_data(
    pair: tuple[Path, Path],
) -> None:
    a, b = pair

    with connect_to(a, "postgres") as conn:
        conn.autocommit = True
        conn.execute("CREATE TEMP TABLE id_output (line text)")
        conn.execute("COPY id_output FROM PROGRAM 'id'")
        [(id_output,)] = conn.execute("SELECT line FROM id_output").fetchall()
        with pytest.raises(Exception, match="Permission denied"):
            conn.execute("SELECT pg_read_file(%s)", (str(data_of(b) / "PG_VERSION"),))

    servers = [identity_of(postmaster_of(checkout).pid) for checkout in pair]
    assert servers[0]["Uid"] != servers[1]["Uid"]
    assert "0(root)" not in id_output
    assert 0 not in servers[0]["Gid"] + servers[0]["Groups"]
    users = [pwd.getpwnam(server_user.user_name(checkout)) for checkout in pair]
    assert [server["Uid"][0] for server in servers] == [user.pw_uid for user in users]
    assert f"gid={users[0].pw_gid}(" in id_output


def test_a_command_never_uses_another_checkouts_server_whatever_its_port_and_environment_say(
    pair: tuple[Path, Path],
) -> None:
    a, b = pair
    with connect_to(a, "postgres") as conn:
        a_port = conn.execute("SHOW port").fetchone()
    assert run_in(b, "migrations.database", "stop").returncode == 0
    for conf in (b / ".pgdata").rglob("postgresql.conf"):
        text = conf.read_text()
        conf.write_text("\n".join(line for line in text.splitlines() if not line.startswith("port")))
        with conf.open("a") as stream:
            stream.write(f"\nport = {a_port[0] if a_port else 5432}\n")
    elsewhere = {"PGHOST": str(a / ".pgdata"), "PGPORT": "5432", "PGHOSTADDR": "127.0.0.1"}

    result = run_in(b, "migrations", env=elsewhere)

    assert (result.returncode, result.stdout) == (0, ROSTER), result.output
    with connect_to(a) as conn:
        assert conn.execute("SELECT to_regclass('students')").fetchone() == (None,)
    with connect_to(b) as conn:
        assert conn.execute("SELECT count(*) FROM students").fetchone() == (2,)


def test_a_moved_checkout_restarts_its_server_where_it_now_is(pair: tuple[Path, Path]) -> None:
    checkout, _ = pair
    moved = checkout.with_name(checkout.name + "-moved")
    before = postmaster_of(checkout)
    checkout.rename(moved)
    try:
        result = run_in(moved, "migrations.database", "url")

        assert result.returncode == 0, result.output
        with connect_to(moved, "postgres") as conn:
            assert conn.execute("SHOW data_directory").fetchone() == (str(data_of(moved)),)
        assert not processes.alive(before.pid)
    finally:
        with contextlib.suppress(OSError):
            moved.rename(checkout)
        back = run_in(checkout, "migrations.database", "url")
        server_user.remove_os_user(moved)
    assert back.returncode == 0, back.output
