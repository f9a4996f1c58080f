"""The types of the factories conftest.py's fixtures provide."""

from collections.abc import Callable

from sqlalchemy import URL, Engine

MakeDatabase = Callable[..., URL]
EngineAt = Callable[[URL], Engine]
