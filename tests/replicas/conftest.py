"""Fixtures: a real primary with a hot standby, from each PostgreSQL on the machine.

One cluster per PostgreSQL installation for the whole run (pytest runs every test of one
installation, then stops its cluster and starts the next); each test gets databases of its
own on it, and standbys of its own when it stops, pauses or reconfigures one. A test marked
``embedded_postgres_only`` runs on the embedded default's PostgreSQL alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.replication import (
    Cluster,
    Replicated,
    Server,
    create_replicated_database,
    drop_replicated_database,
    install_id,
    installed_postgres,
    running_cluster,
)
from tests.helpers.types import AddStandby, MakeReplicated


@pytest.fixture(scope="session", params=installed_postgres(), ids=install_id)
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A primary and one hot standby streaming from it; stopped and deleted at the end, whatever happens."""
    with running_cluster(request.param) as cluster:
        yield cluster


@pytest.fixture
def make_replicated(cluster: Cluster) -> Iterator[MakeReplicated]:
    """Create an empty database on the primary, replayed on the standbys; all dropped at the end."""
    names: list[str] = []

    def make() -> Replicated:
        names.append(f"test_{uuid.uuid4().hex[:16]}")
        return create_replicated_database(cluster, names[-1])

    yield make
    for name in names:
        drop_replicated_database(cluster, name)


@pytest.fixture
def replicated(make_replicated: MakeReplicated) -> Replicated:
    """An empty database on the primary, replayed on the standby."""
    return make_replicated()


@pytest.fixture
def add_standby(cluster: Cluster) -> Iterator[AddStandby]:
    """Add a hot standby to the cluster (postgresql.conf `settings` given); removed at the end."""
    added: list[Server] = []

    def add(settings: dict[str, str] | None = None) -> Server:
        added.append(cluster.add_standby(settings))
        return added[-1]

    yield add
    for standby in added:
        cluster.remove_standby(standby)
