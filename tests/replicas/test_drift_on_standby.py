"""``python -m migrations.drift`` on a hot standby: it only reads, so a standby can be checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import URL

from migrations.database.scratch import alembic_config
from tests.helpers.drift import BY_HAND, INDEX_LINE, run_drift
from tests.helpers.replication import Replicated
from tests.helpers.snapshots import execute
from tests.replicas import embedded_postgres_only

pytestmark = pytest.mark.migrations


@embedded_postgres_only
def test_a_standby_is_checked_and_its_drift_listed(
    replicated: Replicated, server_url: URL, tmp_path: Path
) -> None:
    command.upgrade(alembic_config(replicated.primary), "head")
    replicated.cluster.wait_for_replay()
    assert run_drift(replicated.standby, tmp_path, server_url).returncode == 0

    execute(replicated.primary, BY_HAND)
    replicated.cluster.wait_for_replay()
    result = run_drift(replicated.standby, tmp_path, server_url)
    assert result.returncode == 1, result.output
    assert f"+ {INDEX_LINE}    (in the database only)" in result.stdout.splitlines()
