"""Run `python -m services ...` under cProfile, timing the main thread's CPU, and dump the stats at exit.

    python benchmarks/profiled.py STATS.prof ledger run ...

The ledger's work happens on its main thread (its event loop: a per-thread CPU count of a
draining worker puts over 80 % of its CPU there), so `time.thread_time` is the clock: time the
loop waits or the machine's other processes take is not counted, and a loaded machine does not
disturb the figures. The stats are written when the worker stops (SIGTERM), for `pstats`.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    stats, sys.argv = sys.argv[1], ["services", *sys.argv[2:]]
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        runpy.run_module("services", run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(stats)


if __name__ == "__main__":
    main()
