"""The cocotb runner's environment: which files get pytest's assertion rewriting, where the
simulator's bytecode is cached; a simulator run set up to be started by its caller."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _pytest.pathlib import fnmatch_ex

import fabric
from tb.paths import ROOT
from tb.tests import WALL_LIMIT_ENV
from tb.tools.runner import (
    PLUGIN_AUTOLOAD_ENV,
    Simulation,
    assertion_rewrite_files,
    bytecode_environment,
    environment,
    get_runner,
    prepare,
)


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
    assert env[PLUGIN_AUTOLOAD_ENV] == "1"  # the simulator's pytest rewrites assertions and loads no plugin
    with open(tmp_path / "log", "w") as out:
        assert simulation.run(out) == 0
    assert get_results(results) == (1, 0)
    assert list(tmp_path.glob("UvmSmoke-*-fast.json"))  # the scoreboard's record


@pytest.mark.sim
def test_a_hung_simulation_is_cut_at_the_wall_limit_with_its_stack(tmp_path, monkeypatch):
    """A cocotb test that never ends (here: simulated time runs on for ever) does not hold the
    suite: past ``NIC_SIM_WALL_LIMIT_S`` the simulator prints every thread's stack and exits
    without results."""
    (tmp_path / "hangs_for_ever.py").write_text(
        "import cocotb\n"
        "from cocotb.triggers import Timer\n"
        "import tb.tests  # what every test module of the project imports first\n\n"
        "@cocotb.test()\n"
        "async def spins(dut):\n"
        "    while True:\n"
        "        await Timer(1, 'us')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    get_runner()
    results = tmp_path / "results.xml"
    simulation = prepare(["hangs_for_ever"], results, extra_env={WALL_LIMIT_ENV: "2"}, fabric=fabric.FAST)
    log = tmp_path / "log"
    with open(log, "w") as out:
        for cmd in simulation.commands:  # the guard of this test itself, should the limit not work
            code = subprocess.run(
                cmd,
                cwd=simulation.cwd,
                env=simulation.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            ).returncode
            if code:
                break
    assert code != 0 and not results.exists()
    text = log.read_text()
    assert "running hangs_for_ever.spins" in text and "Timeout (0:00:02)!" in text  # and the stacks after it


@pytest.mark.sim
def test_a_failing_assert_in_the_simulator_still_shows_its_values(tmp_path, monkeypatch):
    """pytest rewrites the assertions of the modules run with its plugins left unloaded: a
    failing ``assert`` reports the values it compared."""
    (tmp_path / "fails_an_assert.py").write_text(
        "import cocotb\n\n@cocotb.test()\nasync def compares(dut):\n    got = [1, 2]\n    assert got == [1, 3]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    get_runner()
    results = tmp_path / "results.xml"
    simulation = prepare(["fails_an_assert"], results, fabric=fabric.FAST)
    assert simulation.env[PLUGIN_AUTOLOAD_ENV] == "1"
    log = tmp_path / "log"
    with open(log, "w") as out:
        simulation.run(out)
    text = log.read_text()
    assert "assert [1, 2] == [1, 3]" in text and "xdist" not in text, text[-3000:]
