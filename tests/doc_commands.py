"""Extract the shell commands that README.md and docs/ print, and sort them into the forms the docs test checks.

Where commands are found: lines of fenced code blocks tagged bash / sh / shell / console (a leading `$ ` is
dropped, `#` comments are cut), lines of indented (4-space) code blocks, and inline code spans, but a line or
span counts as a command only when it starts with a command word (`COMMAND_WORDS`); inside a bash block every
line must. `[ ... ]` marks an optional part and is dropped; `<prefix>`, `<bu>`, `<stage>` and `<Stack>` stand
for the default config's values; any other `<placeholder>` marks a value known only after a deployment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
# A span or line is a command when it starts with one of these (then a space, or the end).
COMMAND_WORDS = (
    "make",
    "npx cdk",
    "cdk",
    "python",
    ".venv/bin/python",
    "aws",
    "cd",
    "npm",
    "pip",
    ".ci/run",
)
PLACEHOLDERS = {"<prefix>": "exco", "<bu>": "retail", "<stage>": "dev", "<Stack>": "Baseline"}
_FENCE = re.compile(r"^\s*```\s*([A-Za-z0-9_-]*)")
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_OPTIONAL = re.compile(r"\s*\[[^\]]*\]")


@dataclass(frozen=True)
class DocCommand:
    source: str  # file:line
    text: str  # as printed
    in_shell_block: bool

    @property
    def normalized(self) -> str:
        text = _OPTIONAL.sub("", self.text).strip()
        for placeholder, value in PLACEHOLDERS.items():
            text = text.replace(placeholder, value)
        return text

    @property
    def needs_deployment_values(self) -> bool:
        return bool(re.search(r"<[^>]+>", self.normalized))

    def words(self) -> list[str]:
        text = re.sub(r"<[^>]+>", "PLACEHOLDER", self.normalized)
        try:
            return shlex.split(text)
        except ValueError:  # e.g. a backslash line continuation printed inline
            return text.replace("\\", " ").split()


def starts_with_command_word(text: str) -> bool:
    return any(text == word or text.startswith(f"{word} ") for word in COMMAND_WORDS)


def documents() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def extract(path: Path) -> Iterator[DocCommand]:
    relative = path.relative_to(REPO_ROOT)
    fence: str | None = None
    previous_blank = True
    in_indented = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        source = f"{relative}:{number}"
        match = _FENCE.match(line)
        if match:
            fence = None if fence is not None else match.group(1).lower() or "text"
            continue
        if fence is not None:
            if fence in SHELL_FENCES:
                text = line.strip().removeprefix("$ ").split(" #", 1)[0].strip()
                if text and not text.startswith("#"):
                    yield DocCommand(source, text, in_shell_block=True)
            continue
        if (
            line.startswith("    ")
            and (previous_blank or in_indented)
            and not line.lstrip().startswith(("-", "*", "|"))
        ):
            in_indented = True
            text = line.strip().split("  #", 1)[0].strip()
            if starts_with_command_word(text):
                yield DocCommand(source, text, in_shell_block=False)
            continue
        in_indented = False
        previous_blank = not line.strip()
        for span in _SPAN.findall(line):
            text = span.strip()
            if starts_with_command_word(text):
                yield DocCommand(source, text, in_shell_block=False)


def all_commands() -> list[DocCommand]:
    return [command for path in documents() for command in extract(path)]
