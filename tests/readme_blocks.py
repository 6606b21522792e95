"""The shell blocks of the README and of `examples/`, read as a user reads them, and the
script that runs one as written.

A block is a fenced `bash`, `sh`, `shell` or `console` block. The line before its fence may
hold a marker, an HTML comment the rendered page does not show:

    <!-- readme-test: session=NAME nodes=2 -->
    <!-- readme-test: skip="why it cannot run here" -->
    <!-- readme-test: ci="why .ci/run runs it instead" -->

- `session=NAME`: blocks of one session run in their order in one environment (one working
  folder and home; what a block exports, the next one sees), as a reader following the page
  in one terminal; a block without a session runs alone. Each session starts fresh.
- `nodes=2`: the block runs on two "machines" at once (two folders on this one, `NODE_RANK`
  0 and 1, `MASTER_ADDR` and `MASTER_PORT` naming the first).
- `skip` / `ci`: the block does not run in the test, and the reason is listed.

Commands: in a block with `$ ` prompts, each prompt starts a command and the lines up to the
next prompt are its expected output (each must appear in what the command prints; `…` stands
for anything; an indented `# …` line goes on with the command's comment); otherwise every
line that is not a comment is a command. A line ending in `\\` continues on the next. A
command's comment `refused (exit N)` says it must exit N, every other command must exit 0.
The commands are run unedited.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELLS = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*readme-test:(.*?)-->\s*$")
REFUSED = re.compile(r"refused \(exit (\d+)\)")
INDENTED_COMMENT = re.compile(r"\s+#")  # in a prompt block: the comment goes on, not output
STATUS = "__readme_status"  # the variable the script keeps a command's exit status in


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in its file
    text: str  # as written, continuation lines included
    code: int  # the exit status it must have
    output: tuple[str, ...] = ()  # lines it must print (console prompts only)

    @property
    def background(self) -> bool:
        """Started with `&`: its status is the job's start, not its end."""
        last = self.text.splitlines()[-1].split(" #", 1)[0].rstrip()
        return last.endswith("&") and not last.endswith("&&")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # the line of its opening fence
    lang: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def session(self) -> str:
        return self.marks.get("session") or self.where

    @property
    def not_run(self) -> str | None:
        """Why the test does not run this block (None: it runs)."""
        if "skip" in self.marks:
            return f"skipped: {self.marks['skip']}"
        if "ci" in self.marks:
            return f"run by .ci/run: {self.marks['ci']}"
        return None

    def commands(self) -> list[Command]:
        lines = self.text.splitlines()
        prompts = any(line.startswith("$ ") for line in lines)
        commands: list[Command] = []
        k = 0
        while k < len(lines):
            line, start = lines[k], k
            k += 1
            if prompts and not line.startswith("$ "):
                continue
            text = line[2:] if prompts else line
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            while text.rstrip().endswith("\\") and k < len(lines):
                text += "\n" + lines[k]
                k += 1
            output: list[str] = []
            while prompts and k < len(lines) and not lines[k].startswith("$ "):
                if lines[k].strip() and not INDENTED_COMMENT.match(lines[k]):
                    output.append(lines[k])
                k += 1
            refused = REFUSED.search(_comment(text))
            commands.append(Command(self.line + 1 + start, text,
                                    int(refused.group(1)) if refused else 0, tuple(output)))
        return commands


def _comment(text: str) -> str:
    """The comments of a command's lines (what follows ` #`; no README command quotes one)."""
    return " ".join(line.split(" #", 1)[1] for line in text.splitlines() if " #" in line)


def _marks(text: str) -> dict[str, str]:
    marks = {}
    for word in shlex.split(text):
        key, _, value = word.partition("=")
        marks[key] = value
    return marks


def blocks(path: Path) -> list[Block]:
    """The shell blocks of a Markdown file, in order, with their markers."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) not in SHELLS:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        found.append(Block(path, line, match.group(1), match.group(2),
                           _marks(marker.group(1)) if marker else {}))
    return found


def documents() -> list[Path]:
    """The README and every Markdown file under `examples/`."""
    return [ROOT / "README.md", *sorted((ROOT / "examples").rglob("*.md"))]


def all_blocks() -> list[Block]:
    return [b for path in documents() for b in blocks(path)]


def sessions() -> dict[str, list[Block]]:
    """The blocks that run, by session, in order."""
    out: dict[str, list[Block]] = {}
    for block in all_blocks():
        if block.not_run is None:
            out.setdefault(block.session, []).append(block)
    return out


def script(block: Block, outputs: Path) -> str:
    """A bash script that runs the block's commands as written, one after another, and stops
    at the first whose exit status is not the one it must have; what a command with expected
    output prints is also kept in `outputs/LINE`. Background jobs are the block's to stop:
    one still running 10 s after the last command fails it."""
    parts = ["set -u",
             "__readme_fail() { echo \"README-TEST-FAIL $1\" >&2; kill $(jobs -p) 2>/dev/null;"
             " exit 97; }"]
    for c in block.commands():
        where = f"{block.path.name}:{c.line}"
        parts.append(f"echo {shlex.quote(f'README-TEST-RUN {where}')} \"$SECONDS\" >&2")
        if c.output:
            out = shlex.quote(str(outputs / str(c.line)))
            parts += ["{", c.text, f"}} > {out} 2>&1; {STATUS}=$?; cat {out}"]
        else:
            parts += [c.text, f"{STATUS}=$?"]
        if not c.background:
            parts.append(f'[ "${STATUS}" = {c.code} ] || __readme_fail '
                         f'"{where}: exit ${STATUS}, expected {c.code}"')
    parts += ["for _ in $(seq 100); do [ -z \"$(jobs -pr)\" ] && break; sleep 0.1; done",
              f'[ -z "$(jobs -pr)" ] || __readme_fail "{block.where}: left a job running"',
              "true"]
    return "\n".join(parts) + "\n"


def expected_lines_found(expected: tuple[str, ...], printed: str) -> list[str]:
    """The expected lines that `printed` lacks (`…` in a line matches anything)."""
    missing = []
    lines = printed.splitlines()
    for want in expected:
        pattern = re.compile(".*".join(re.escape(p) for p in want.strip().split("…")))
        if not any(pattern.fullmatch(line.strip()) for line in lines):
            missing.append(want)
    return missing
