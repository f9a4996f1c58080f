"""How the schema in ``models/`` reaches a database, and the commands around it.

``env.py``, ``script.py.mako`` and ``versions/`` are Alembic's; ``runner.py`` is the machinery
env.py calls; ``database/`` finds or starts the PostgreSQL every command talks to; the other
modules are the project's commands (``python -m migrations``, ``.history``, ``.lint``, ...).
"""

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).resolve().parent
ALEMBIC_INI = SCRIPT_LOCATION.parent / "alembic.ini"
