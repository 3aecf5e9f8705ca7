"""The cocotb runner's environment: which files get pytest's assertion rewriting, where the
simulator's bytecode is cached."""

from __future__ import annotations

import os
from pathlib import Path

from _pytest.pathlib import fnmatch_ex

from tb.paths import ROOT
from tb.tools.runner import assertion_rewrite_files, bytecode_environment, environment


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


def test_the_simulator_caches_its_bytecode_in_the_build_folder_when_none_may_be_written_beside_the_sources():
    build = Path("/build")
    assert bytecode_environment(build, {"PYTHONDONTWRITEBYTECODE": "1"}) == {
        "PYTHONDONTWRITEBYTECODE": None,
        "PYTHONPYCACHEPREFIX": "/build/pycache",
    }
    assert bytecode_environment(build, {}) == {}  # bytecode is written (beside the sources) already
    assert bytecode_environment(build, {"PYTHONDONTWRITEBYTECODE": ""}) == {}
    # a user's own cache folder wins
    assert bytecode_environment(build, {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/mine"}) == {}


def test_environment_sets_and_unsets_variables_and_restores_them():
    os.environ["NIC_TEST_RUNNER_SET"] = "before"
    os.environ.pop("NIC_TEST_RUNNER_NEW", None)
    try:
        with environment({"NIC_TEST_RUNNER_SET": None, "NIC_TEST_RUNNER_NEW": "during"}):
            assert "NIC_TEST_RUNNER_SET" not in os.environ
            assert os.environ["NIC_TEST_RUNNER_NEW"] == "during"
        assert os.environ["NIC_TEST_RUNNER_SET"] == "before"
        assert "NIC_TEST_RUNNER_NEW" not in os.environ
    finally:
        os.environ.pop("NIC_TEST_RUNNER_SET", None)
