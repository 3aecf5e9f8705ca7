"""Unit tests run without a simulator; the cocotb modules run through tests/test_sim.py."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tb.tests import WALL_LIMIT_ENV

#: a simulator run started by the suite (every cocotb module, the regressions' seeds) that hangs
#: is cut after this many wall seconds and fails; the slowest module takes well under a minute
os.environ.setdefault(WALL_LIMIT_ENV, "600")


def run_sync(coro):
    """Run a coroutine that never suspends (capability register handlers) to completion."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("coroutine suspended; it needs a simulator")
