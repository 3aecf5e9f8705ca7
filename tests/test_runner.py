"""The cocotb runner's environment: which files get pytest's assertion rewriting, where the
simulator's bytecode is cached; a simulator run set up to be started by its caller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _pytest.pathlib import fnmatch_ex

import fabric
from tb.paths import ROOT
from tb.tools.runner import Simulation, assertion_rewrite_files, bytecode_environment, environment, get_runner, prepare


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


def test_a_simulation_runs_its_commands_in_turn_into_one_output_and_stops_at_a_failure(tmp_path):
    out_file = tmp_path / "log"
    marker = tmp_path / "ran"
    commands = [["sh", "-c", "echo out; echo err >&2"], ["sh", "-c", "exit 3"], ["touch", str(marker)]]
    with open(out_file, "w") as out:
        assert Simulation(commands, tmp_path, dict(os.environ)).run(out) == 3
    assert out_file.read_text().split() == ["out", "err"]
    assert not marker.exists()  # the command after the failure did not run
    with open(out_file, "w") as out:
        assert Simulation([["true"]], tmp_path, dict(os.environ)).run(out) == 0


@pytest.mark.sim
def test_a_prepared_run_is_the_one_cocotbs_runner_would_start_and_runs_alone(tmp_path):
    """``make regress`` and ``make fuzz`` start each seed's simulator themselves: the run
    carries the seed, the fabric, the caller's variables and no waveform, the process's own
    environment is left as it was, and the run passes its test."""
    from cocotb_tools.check_results import get_results  # noqa: PLC0415

    get_runner()  # sets up PATH for the simulator, once
    before = dict(os.environ)
    results = tmp_path / "results.xml"
    simulation = prepare(
        ["tb.tests.test_uvm"],
        results,
        testcase="UvmSmoke",
        extra_env={"NIC_RECORD_DIR": str(tmp_path)},
        seed=5,
        fabric=fabric.FAST,
    )
    assert dict(os.environ) | {"PATH": ""} == before | {"PATH": ""}  # PATH: each get_runner puts the tools first
    env = simulation.env
    assert env["COCOTB_RANDOM_SEED"] == "5" and env[fabric.ENV] == fabric.FAST
    assert env["NIC_RECORD_DIR"] == str(tmp_path) and env["COCOTB_RESULTS_FILE"] == str(results)
    assert "WAVES" not in env and "PYTEST_CURRENT_TEST" not in env  # no waveform; our caller checks the results
    with open(tmp_path / "log", "w") as out:
        assert simulation.run(out) == 0
    assert get_results(results) == (1, 0)
    assert list(tmp_path.glob("UvmSmoke-*-fast.json"))  # the scoreboard's record
