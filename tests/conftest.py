"""Unit tests run without a simulator; the cocotb modules run through tests/test_sim.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_sync(coro):
    """Run a coroutine that never suspends (capability register handlers) to completion."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("coroutine suspended; it needs a simulator")
