"""Every ``python -m seqlm ...`` command written in the README and in docs/ composes exactly as
written there (read as a shell reads it): its groups and choices exist, its keys are keys, its
values have the right types. The check is the CLI's own, run before a command starts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from seqlm.cli.overrides import (
    check,
    check_group_choices,
    check_network_options,
    hydra_overrides,
    quoted,
)
from seqlm.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INLINE = re.compile(r"`((?:\$ )?python -m seqlm [^`]+)`")


def commands() -> list[tuple[str, str]]:
    """(file:line, command) of every command in a code block or an inline code span."""
    out = []
    for path in FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        fenced, i = False, 0
        while i < len(lines):
            line, number = lines[i], i + 1
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and "python -m seqlm " in line:
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                out.append((f"{path.name}:{number}", line[line.index("python -m seqlm ") :]))
            elif not fenced:
                out += [(f"{path.name}:{number}", m) for m in INLINE.findall(line)]
            i += 1
    return out


CASES = commands()


def test_the_docs_have_commands():
    assert len(CASES) > 40


@pytest.mark.parametrize("where, line", CASES, ids=[w for w, _ in CASES])
def test_a_documented_command_composes(where, line):
    words = shlex.split(line.removeprefix("$ "), comments=True)[3:]  # after python -m seqlm
    command, args = words[0], [w for w in words[1:] if w not in ("...", "…")]
    if command in ("--help", "-h"):
        return  # the overview of the commands
    assert command in COMMANDS, f"{where}: unknown command {command}"
    args = [a for a in args if not a.startswith("RUN") or "=" in a]  # RUN_DIR placeholders
    overrides = hydra_overrides(command, args)
    check_group_choices(overrides)
    check_network_options(overrides)
    check(command, quoted(overrides))
