"""What the README says a user runs, read from the README itself."""

from __future__ import annotations

import re

from tests.helpers.commands import PROJECT

README = (PROJECT / "README.md").read_text()


def section(title: str) -> str:
    """The text of the README's `## title` section."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert found, f"README.md has no '## {title}' section"
    return found[1]


def quick_start_commands() -> list[str]:
    """The commands of the quick start's first ```sh block, without their comments."""
    block = re.search(r"^```sh\n(.*?)^```", section("Quick start"), re.M | re.S)
    assert block, "README.md's quick start has no ```sh block"
    return [line.split("#")[0].strip() for line in block[1].splitlines() if line.strip()]
