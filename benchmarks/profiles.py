"""Where the CPU goes: py-spy recordings of the stack's processes, and their summary.

``py-spy record -f raw`` writes one line per distinct stack: ``frame;frame;...;frame count``,
outermost first, each frame ``function (file:line)`` (and, with ``--subprocesses``, leading
``process PID:"command"`` frames). Only samples of threads holding the GIL are recorded
(``--gil``): a thread waiting for Postgres, RabbitMQ or the SMTP server has released it, and so
has one waiting for a CPU to run on, which a loaded two-core machine has many of (py-spy's
default "not idle" counts those). So the shares are shares of the Python code's CPU time,
near enough. The summary answers three questions:

- which modules burn it (self time by the innermost frame's top-level module);
- how much is spent in each of Mailhub's own functions, all they call included (inclusive);
- under which line of Mailhub's own code it is spent (the innermost frame in ``PROJECT``: the
  line of ``deliveries/services/sending.py`` that ran the query, not the query machinery; a
  request's framework work lands on the outermost Mailhub middleware);
- which functions burn it themselves (self time).

Recording needs ``py-spy`` (in .venv) and permission to trace the processes (root, or
``kernel.yama.ptrace_scope`` = 0).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Mailhub's own packages: the innermost frame in one of them is "the line that asked for it".
PROJECT = ("accounts", "deliveries", "api", "webhooks", "mailhub")
OUTSIDE = "(no Mailhub frame: server, worker or framework machinery)"

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int | None = None

    @property
    def module(self) -> str:
        """The top-level module: ``django`` for django/db/models/query.py, ``ssl`` for ssl.py."""
        first = self.file.split("/", 1)[0]
        return first.removesuffix(".py") or self.file

    @property
    def in_project(self) -> bool:
        return self.module in PROJECT

    def where(self, *, line: bool = True) -> str:
        at = f"{self.file}:{self.line}" if line and self.line is not None else self.file
        return f"{self.function} ({at})"


def parse_frame(text: str) -> Frame | None:
    """One frame of a raw stack; None for py-spy's ``process PID:"..."`` frames."""
    if text.startswith("process ") and ':"' in text:
        return None
    match = _FRAME.match(text)
    if match is None:
        return Frame(function=text, file="?")
    line = match.group("line")
    return Frame(match.group("function"), match.group("file"), int(line) if line else None)


def parse_raw(text: str) -> list[tuple[list[Frame], int]]:
    """The stacks of a raw py-spy file, outermost frame first, with their sample counts."""
    stacks = []
    for raw_line in text.splitlines():
        stack, _, count = raw_line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame for part in stack.split(";") if (frame := parse_frame(part))]
        if frames:
            stacks.append((frames, int(count)))
    return stacks


@dataclass(frozen=True)
class Summary:
    samples: int
    by_module: list[tuple[str, float]]  # self share by top-level module, largest first
    by_project_function: list[tuple[str, float]]  # inclusive share of each Mailhub function
    by_project_line: list[tuple[str, float]]  # share under each innermost line of Mailhub code
    by_function: list[tuple[str, float]]  # self share by function (all lines of it)


def summarize(stacks: Iterable[tuple[list[Frame], int]], *, top: int = 12) -> Summary:
    """Shares (0..1) of all samples, the ``top`` largest of each kind."""
    modules: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        leaf = frames[-1]
        modules[leaf.module] += count
        functions[leaf.where(line=False)] += count
        # Once per sample, however often the function is on the stack (recursion).
        for name in {frame.where(line=False) for frame in frames if frame.in_project}:
            inclusive[name] += count
        project = next((frame for frame in reversed(frames) if frame.in_project), None)
        lines[project.where() if project else OUTSIDE] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common(top)]

    if total == 0:
        return Summary(0, [], [], [], [])
    return Summary(total, shares(modules), shares(inclusive), shares(lines), shares(functions))


def format_summary(title: str, summary: Summary, *, rate: int) -> str:
    if summary.samples == 0:
        return f"{title}: no samples (idle, or py-spy could not attach)"
    seconds = summary.samples / rate
    out = [f"{title}: {summary.samples:,} samples holding the GIL at {rate} Hz (~{seconds:,.1f} s)"]
    out.append(
        "  self time by module: "
        + ", ".join(f"{name} {share:.1%}" for name, share in summary.by_module)
    )
    out.append("  in each Mailhub function, with all it calls:")
    out += [f"    {share:6.1%}  {name}" for name, share in summary.by_project_function]
    out.append("  under each line of Mailhub code (innermost Mailhub frame):")
    out += [f"    {share:6.1%}  {name}" for name, share in summary.by_project_line]
    out.append("  self time by function:")
    out += [f"    {share:6.1%}  {name}" for name, share in summary.by_function]
    return "\n".join(out)


class Recorder:
    """``py-spy record`` of one process and its children, from ``start()`` until ``stop()``."""

    def __init__(self, *, pid: int, output: Path, rate: int) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Recorder:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        self._log = self.output.with_suffix(".log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            [
                py_spy,
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--gil",
                # Without it py-spy stops the process for every sample, which slows it down.
                "--nonblocking",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        return self

    def stop(self) -> list[tuple[list[Frame], int]]:
        """Stop recording (py-spy writes its file on SIGINT) and read what it recorded."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._log is not None:
            self._log.close()
        if not self.output.exists():
            return []
        return parse_raw(self.output.read_text(errors="replace"))
