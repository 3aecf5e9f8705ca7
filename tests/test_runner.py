"""The cocotb runner's environment: which files get pytest's assertion rewriting."""

from __future__ import annotations

from pathlib import Path

from _pytest.pathlib import fnmatch_ex

from tb.paths import ROOT
from tb.tools.runner import assertion_rewrite_files


def rewritten(patterns: str, path: Path) -> bool:
    """Whether pytest's import hook, given ``python_files=patterns``, rewrites ``path``."""
    return any(fnmatch_ex(pattern, path) for pattern in patterns.split())


def test_rewrites_the_test_bench_and_the_modules_run_but_not_the_libraries():
    patterns = assertion_rewrite_files(["tb.tests.test_uvm", "my_checks"])
    assert rewritten(patterns, ROOT / "tb" / "tests" / "test_uvm.py")
    assert rewritten(patterns, ROOT / "tb" / "uvm" / "scoreboard.py")
    assert rewritten(patterns, Path("/home/user/proj/my_checks.py"))  # a user's module (sriov-nic run)
    for library in ("model/nic.py", "pcicore/irq.py", ".venv/lib/python3.11/site-packages/scapy/packet.py"):
        assert not rewritten(patterns, ROOT / library)
