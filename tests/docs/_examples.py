"""Find the guides' example blocks that run offline, and turn one into a checked shell script.

A block is marked for running by its info string, ``console title="Runs offline"`` (Material
shows the title above the block). In it, every line that starts with ``$ `` is a command
(continued over lines that end in a backslash); every other line is output and is not
compared. A command must exit 0 unless the next command is ``echo $?`` and its output line
gives another code.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

MARKER = 'console title="Runs offline"'
_BLOCK = re.compile(r"^```" + re.escape(MARKER) + r"\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Command:
    """One command of a block and the exit code the guide documents for it."""

    text: str
    exit_code: int = 0


@dataclass
class Example:
    """A marked block: where it is and its commands."""

    page: str
    line: int
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def slow(self) -> bool:
        """Whether the block trains or makes data (10 s to a minute on a busy 2-core box)."""
        heavy = re.compile(r"\bheimdall (train|sweep start|data synth|data import|predict)\b")
        return any(heavy.search(c.text) and c.exit_code == 0 for c in self.commands)


def examples(docs: Path) -> list[Example]:
    """Every marked block in ``docs``, in page order."""
    found = []
    for page in sorted(docs.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Example(str(page.relative_to(docs)), line, parse(match.group(1))))
    return found


def parse(body: str) -> list[Command]:
    """The commands of a block, with their documented exit codes."""
    commands: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("$ "):
            continue
        text = line[2:]
        while text.endswith("\\") and i < len(lines):
            text = text[:-1] + " " + lines[i].strip()
            i += 1
        if text.strip() == "echo $?":
            if not commands or i >= len(lines):
                raise ValueError(f"'echo $?' needs a command before it and a code after it: {body[:80]!r}")
            commands[-1].exit_code = int(lines[i].strip())
            i += 1
            continue
        commands.append(Command(text.strip()))
    return commands


def script(example: Example) -> str:
    """A bash script that runs the block's commands in order and stops at the first wrong exit code."""
    out = ["set -u"]
    for command in example.commands:
        out.append(command.text)
        said = f"echo {shlex.quote(command.text)}\" exited $rc; the guide says {command.exit_code}\" >&2"
        out.append(f"rc=$?; if [ $rc -ne {command.exit_code} ]; then {said}; exit 97; fi")
    return "\n".join(out) + "\n"
