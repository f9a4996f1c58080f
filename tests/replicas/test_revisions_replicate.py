"""Every revision, applied on the primary, reaches the hot standby whole: same catalog, same rows.

Compared with the gate's own catalog snapshot (migrations/catalog.py), once the standby has
replayed the primary's WAL position (pg_last_wal_replay_lsn() on the standby), never after a sleep.
"""

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from migrations.catalog import difference
from migrations.database.scratch import alembic_config
from tests.helpers.replication import Replicated
from tests.helpers.snapshots import snapshot

pytestmark = pytest.mark.migrations


def assert_standby_equals_primary(replicated: Replicated, after: str) -> list[str]:
    replicated.cluster.wait_for_replay()
    on_primary = snapshot(replicated.primary)
    diff = difference(on_primary, snapshot(replicated.standby), "primary", "standby")
    assert not diff, f"after {after}, the standby differs from the primary:\n{diff}"
    return on_primary


def test_each_revision_up_to_head_and_the_downgrade_to_base_replay_identically_on_the_standby(
    replicated: Replicated,
) -> None:
    config = alembic_config(replicated.primary)
    revisions = [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()]
    assert revisions, "no revisions found"
    seen = assert_standby_equals_primary(replicated, "creating the database")
    for revision in reversed(revisions):
        command.upgrade(config, revision)
        now = assert_standby_equals_primary(replicated, f"upgrade {revision}")
        assert now != seen, f"upgrade {revision} changed nothing: there was nothing to see replayed"
        seen = now

    command.downgrade(config, "base")
    assert assert_standby_equals_primary(replicated, "downgrade base") != seen
