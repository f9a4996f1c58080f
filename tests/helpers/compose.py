"""docker-compose.yml read as Docker Compose reads it: YAML, merged files, then variables interpolated.

Docker cannot run on the CI machine, so the tests check what Compose would hand each container.
Interpolation follows the compose specification: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+replacement}``, ``${VAR+replacement}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\})"
)


class MissingVariableError(ValueError):
    """A ${VAR:?error} whose variable is unset (or empty): Compose stops with the message."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["bare"] or match["name"]
        operator, argument = match["operator"] or "", match["argument"] or ""
        found = env.get(name)
        # With a colon, an empty value counts as unset.
        available = bool(found) if operator.startswith(":") else found is not None
        kind = operator[-1:]
        if kind == "-":
            return found if available and found is not None else argument
        if kind == "?":
            if not available:
                raise MissingVariableError(f"required variable {name} is missing a value: {argument}")
            return found or ""
        if kind == "+":
            return argument if available else ""
        return found or ""

    return VARIABLE.sub(substitute, value)


def merged(base: Any, override: Any) -> Any:
    """An override file merged into a base, as `docker compose -f base -f override` does."""
    if isinstance(base, dict) and isinstance(override, dict):
        both = {**base, **override}
        return {
            key: merged(base[key], override[key]) if key in base and key in override else both[key]
            for key in both
        }
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


def load(*files: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The configuration Compose would run: the files merged in order, then interpolated with `env`."""
    configuration: Any = {}
    for file in files:
        configuration = merged(configuration, yaml.safe_load(file.read_text()))
    result: dict[str, Any] = interpolate(configuration, env)
    return result
