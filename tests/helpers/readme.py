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


def shell_commands(title: str) -> list[str]:
    """The commands of the ```sh blocks of the README's `## title` section, without their comments."""
    blocks = re.findall(r"^```sh\n(.*?)^```", section(title), re.M | re.S)
    assert blocks, f"README.md's {title!r} has no ```sh block"
    return [line.split(" #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def quick_start_commands() -> list[str]:
    return shell_commands("Quick start")
