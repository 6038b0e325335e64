"""The process sampler: CPU counted per process, the fast groups read in between."""

import os
import time

from benchmarks.procs import ProcessSampler, cpu_between


def busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_fast_group_is_read_again_between_full_samples():
    full, fast = [], []

    def groups():
        full.append(1)
        return {"load generator": [os.getpid()]}

    def postgres():
        fast.append(1)
        return {"postgres": [os.getpid()]}

    sampler = ProcessSampler(groups, interval=60, fast=postgres, fast_interval=0.01)
    sampler.refresh()
    before = sampler.mark()
    fast.clear()
    sampler.start()
    try:
        busy(0.1)
        deadline = time.monotonic() + 5
        while len(fast) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sampler.stop()
    assert len(full) == 2  # the mark and the start: the next full sample is a minute away
    assert len(fast) >= 3
    # Read by the fast group alone: the full samples do not name that group.
    assert cpu_between(before, sampler.mark())["postgres"] >= 0.05
