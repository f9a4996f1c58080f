"""pytest-alembic's experimental all-models check, told where the models live.

Its automatic detection walks only packages, and finds ``models.base`` (a module) first;
naming the package is the option pytest-alembic provides for that case.
"""

from pytest_alembic import MigrationContext
from pytest_alembic.tests.experimental import test_all_models_register_on_metadata as check


def test_every_model_module_registers_its_tables_on_the_metadata_env_py_uses(
    alembic_runner: MigrationContext,
) -> None:
    check(alembic_runner, model_package="models")
