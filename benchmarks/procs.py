"""What the processes cost: resident memory and CPU time from /proc, and the machine itself."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    parents = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses; the rest follows the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def process_trees(roots: dict[str, int]) -> dict[str, list[int]]:
    """Each root pid with all its descendants (Celery's pool children and beat, gunicorn's
    workers), from one pass over /proc."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    trees = {}
    for name, root in roots.items():
        tree, frontier = [], [root]
        while frontier:
            current = frontier.pop()
            tree.append(current)
            frontier.extend(children.get(current, []))
        trees[name] = tree
    return trees


def rss_bytes(pid: int) -> int:
    """Resident set size; 0 for a process that is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process itself used so far; None for one that is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime stime


def pids_named(name: str) -> list[int]:
    """Processes whose command name (``comm``) is ``name``, e.g. ``beam.smp`` for RabbitMQ."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@contextlib.contextmanager
def stopped(pids: list[int]) -> Iterator[None]:
    """These processes stopped with SIGSTOP until the block ends (SIGCONT, also on error)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass
class MemoryPeak:
    """The largest single process and the largest sum over a group's processes."""

    largest_process: int = 0
    largest_total: int = 0
    processes: int = 0

    def add(self, sizes: list[int]) -> None:
        if not sizes:
            return
        self.largest_process = max(self.largest_process, max(sizes))
        if sum(sizes) > self.largest_total:
            self.largest_total = sum(sizes)
            self.processes = len(sizes)


Groups = Callable[[], dict[str, list[int]]]  # group name -> its processes now


class ProcessSampler:
    """Samples the RSS and CPU time of groups of processes, every ``interval`` seconds in a
    background thread (and at once on ``mark()``).

    CPU is kept per process, at the last value seen, also after the process ended: a phase's
    CPU is then the difference between two marks, and a process that ended or started between
    them (a recycled gunicorn worker, a new Postgres backend) is counted for what it used in
    between, less at most one interval.

    ``fast``, when given, names the processes of some groups (say, the Postgres backends, from
    one query) and is asked every ``fast_interval`` in between; their CPU is read each time. A
    Postgres backend does its last work (a commit) just before it ends, and a client that
    connects for each batch of work ends a backend every second or so: such a process is then
    counted less at most ``fast_interval``, and missed only if it lived less than that.
    """

    def __init__(
        self,
        groups: Groups,
        *,
        interval: float = 1.0,
        fast: Groups | None = None,
        fast_interval: float = 0.1,
    ) -> None:
        self.groups = groups
        self.interval = interval
        self.fast = fast
        self.fast_interval = fast_interval
        self.peaks: dict[str, MemoryPeak] = {}
        self.series: list[tuple[float, dict[str, int]]] = []  # (monotonic, group -> RSS sum)
        self._cpu: dict[str, dict[int, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        totals = {}
        groups = self.groups()
        with self._lock:
            for name, pids in groups.items():
                sizes = [size for size in map(rss_bytes, pids) if size]
                self.peaks.setdefault(name, MemoryPeak()).add(sizes)
                totals[name] = sum(sizes)
                seen = self._cpu.setdefault(name, {})
                for pid in pids:
                    used = cpu_seconds(pid)
                    if used is not None:
                        seen[pid] = used
            self.series.append((time.monotonic(), totals))

    def refresh(self) -> None:
        """Read the CPU time of the ``fast`` groups' processes."""
        if self.fast is None:
            return
        groups = self.fast()
        with self._lock:
            for name, pids in groups.items():
                seen = self._cpu.setdefault(name, {})
                for pid in pids:
                    used = cpu_seconds(pid)
                    if used is not None:
                        seen[pid] = used

    def mark(self) -> dict[str, dict[int, float]]:
        """Sample now; the CPU seen so far, for ``cpu_between``."""
        self.sample()
        with self._lock:
            return {name: dict(pids) for name, pids in self._cpu.items()}

    def start(self) -> ProcessSampler:
        def loop() -> None:
            step = self.fast_interval if self.fast else self.interval
            due = time.monotonic() + self.interval
            while not self._stop.wait(step):
                if time.monotonic() >= due:
                    self.sample()
                    due = time.monotonic() + self.interval
                else:
                    self.refresh()

        self.sample()
        self._thread = threading.Thread(target=loop, name="process-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def cpu_between(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds each group used between two ``mark()``s."""
    return {
        name: sum(used - before.get(name, {}).get(pid, 0.0) for pid, used in pids.items())
        for name, pids in after.items()
    }


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory_bytes: int
    load: tuple[float, float, float]
    kernel: str
    python: str


def machine() -> Machine:
    model = "unknown"
    for line in (PROC / "cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = 0
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
            break
    return Machine(
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=model,
        memory_bytes=memory,
        load=os.getloadavg(),
        kernel=platform.release(),
        python=platform.python_version(),
    )
