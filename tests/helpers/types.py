"""The types of the factories conftest.py's fixtures provide."""

from collections.abc import Callable

from sqlalchemy import URL, Engine

from tests.helpers.replication import Replicated, Server

MakeDatabase = Callable[..., URL]
EngineAt = Callable[[URL], Engine]
MakeReplicated = Callable[[], Replicated]
AddStandby = Callable[..., Server]
