"""Build the HDL harness once and run cocotb test modules under Verilator.

Used by ``make sim`` (all modules, one JUnit ``results.xml``), by the pytest suite (one
pytest test per cocotb module, sharing one build) and by ``sriov-nic run`` (a user's own
modules, see :mod:`tb.tools.cli`).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from xml.etree import ElementTree

import fabric as fabrics
from tb.paths import BUILD_DIR, HDL_TOP, ROOT
from tb.tools.toolchain import lz4_flags, setup_environment

if TYPE_CHECKING:
    from cocotb_tools.runner import Runner

TOPLEVEL = "nic_harness"

TESTS_DIR = ROOT / "tb" / "tests"
#: the long pyuvm module runs last so quick failures show first
LAST = ("tb.tests.test_uvm",)


def discover() -> list[str]:
    """Every cocotb test module in ``tb/tests`` (``test_*.py``), in name order, long ones last."""
    names = [f"tb.tests.{p.stem}" for p in sorted(TESTS_DIR.glob("test_*.py"))]
    return sorted(names, key=lambda name: (name in LAST, name))


SIM_MODULES = discover()
#: modules whose subject is the PCIe level itself (config space, enumeration, SR-IOV
#: capability, link): ``make test`` runs them on the TLP fabric as well as on ``$FABRIC``
PCIE_LEVEL_MODULES = (
    "tb.tests.test_enumeration",
    "tb.tests.test_sriov_config",
    "tb.tests.test_migration",
    "tb.tests.test_migration_states",
)
#: modules with tests too slow for ``make test`` on the TLP fabric (``NIC_SLOW_TESTS=1``), and
#: the AER module (error reporting is PCIe-level, 30 s there): ``make regress`` runs them there
SLOW_MODULES = ("tb.tests.test_enumeration", "tb.tests.test_fairness", "tb.tests.test_aer")


#: cocotb's variable naming the files whose assertions pytest rewrites (default every ``*.py``)
REWRITE_ENV = "COCOTB_REWRITE_ASSERTION_FILES"
#: the test bench's own files (``tb/`` at any depth: fnmatch's ``*`` spans folders)
TESTBENCH_FILES = "tb/*.py"


def assertion_rewrite_files(modules: list[str]) -> str:
    """The files whose assertions cocotb has pytest rewrite: the test bench's and the modules
    run (pytest's own convention: test modules, not the libraries under test). cocotb's
    default, every ``*.py``, rewrites and recompiles each library module the simulator
    imports (scapy, pyuvm, cocotbext-pcie, the model) in every simulator process, since
    rewritten code is cached only where bytecode may be written: about 1.3 s per process.
    Only the failure messages of assertions depend on it."""
    names = dict.fromkeys(f"{module.rpartition('.')[2]}.py" for module in modules)
    return " ".join([TESTBENCH_FILES, *names])


#: pytest's switch off for its plugins' entry points. The simulator's pytest only rewrites
#: assertions (cocotb's import hook, set up from a pytest configuration); with autoload on, that
#: configuration scanned every installed distribution and imported each plugin (pytest-xdist's)
#: in every simulator process, 20 ms of it. A user's own setting wins.
PLUGIN_AUTOLOAD_ENV = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"


#: the variables by which a user keeps bytecode from being written, or says where it goes
NO_BYTECODE_ENV, PYCACHE_ENV = "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"


def bytecode_environment(build_root: Path, environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """What the simulator's environment changes so that its bytecode is cached: nothing,
    unless ``environ`` (default the process's) forbids writing bytecode
    (``PYTHONDONTWRITEBYTECODE``) without naming a cache folder (``PYTHONPYCACHEPREFIX``).
    Then every simulator process compiled each module it imports (the project's, pyuvm's,
    cocotbext-pcie's) and had pytest rewrite the test bench's assertions again (pytest
    caches rewritten code only where bytecode may be written): 0.2 s per process. So the
    simulator writes its bytecode into the build folder (``<build_root>/pycache``, with
    ``sys.pycache_prefix``), never beside the sources, which is what forbidding it keeps
    clean; None: the variable is unset for the simulator."""
    environ = os.environ if environ is None else environ
    if not environ.get(NO_BYTECODE_ENV) or environ.get(PYCACHE_ENV):
        return {}
    return {NO_BYTECODE_ENV: None, PYCACHE_ENV: str(build_root / "pycache")}


def get_runner(waves: bool = False, build_root: Path | None = None) -> Runner:
    """Return a Verilator runner whose build (under ``build_root``, default
    :data:`~tb.paths.BUILD_DIR`) is up to date: built at most once, also when parallel
    workers ask at the same moment."""
    build_root = build_root or BUILD_DIR
    setup_environment(build_root / ".bin")
    from cocotb_tools.runner import get_runner as _get_runner  # noqa: PLC0415 -- after PATH is set up

    runner = _get_runner("verilator")
    build_dir = build_root / ("waves" if waves else "default")
    stamp = build_dir / TOPLEVEL
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:  # parallel pytest workers build once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.stat().st_mtime < HDL_TOP.stat().st_mtime:
            runner.build(
                sources=[HDL_TOP],
                hdl_toplevel=TOPLEVEL,
                build_dir=build_dir,
                build_args=(["--trace-fst", "--trace-structs", *lz4_flags()] if waves else []),
                waves=waves,
                timescale=("1ns", "1ps"),
            )
    runner.build_dir = build_dir
    return runner


@contextmanager
def environment(env: dict[str, str | None]) -> Iterator[None]:
    """The process environment with ``env`` set (a None value: unset), restored afterwards."""
    saved = {key: os.environ.get(key) for key in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(
    modules: list[str],
    testcase: str | None = None,
    waves: bool = False,
    results_xml: Path | None = None,
    extra_env: dict[str, str | None] | None = None,
    seed: int | None = None,
    build_root: Path | None = None,
    pythonpath: list[Path] | None = None,
    fabric: str | None = None,
) -> Path:
    """Run cocotb ``modules`` in one simulator process on ``fabric`` (default ``$FABRIC``,
    else tlp: :mod:`fabric`); return the JUnit results path. ``pythonpath``: folders the
    modules are imported from, before this package's own; ``extra_env``: variables set (a
    None value: unset) for the simulator."""
    build_root = build_root or BUILD_DIR
    runner = get_runner(waves, build_root)
    return _test(runner, modules, testcase, waves, results_xml, extra_env, seed, build_root, pythonpath, fabric)


def _test(
    runner: Runner,
    modules: list[str],
    testcase: str | None,
    waves: bool,
    results_xml: Path | None,
    extra_env: dict[str, str | None] | None,
    seed: int | None,
    build_root: Path,
    pythonpath: list[Path] | None,
    fabric: str | None,
) -> Path:
    env: dict[str, str | None] = {**bytecode_environment(build_root), **(extra_env or {})}
    env.setdefault(REWRITE_ENV, assertion_rewrite_files(modules))
    if PLUGIN_AUTOLOAD_ENV not in os.environ:
        env.setdefault(PLUGIN_AUTOLOAD_ENV, "1")
    if fabric is not None:
        env[fabrics.ENV] = fabrics.resolve(fabric)
    # cocotb's runner hands the simulator this process's sys.path as PYTHONPATH, and lets
    # the process environment win over extra_env
    saved = list(sys.path)
    sys.path[:0] = [str(p) for p in [*(pythonpath or []), ROOT]]
    try:
        with environment(env):
            return runner.test(
                test_module=modules,
                hdl_toplevel=TOPLEVEL,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                build_dir=runner.build_dir,
                test_dir=runner.build_dir,
                results_xml=str(results_xml) if results_xml else None,
                waves=waves,
                test_args=["--trace-file", str(build_root / "dump.fst")] if waves else [],
                extra_env={key: value for key, value in env.items() if value is not None},
                seed=seed,
                timescale=("1ns", "1ps"),
            )
    finally:
        sys.path[:] = saved


@dataclass
class Simulation:
    """A simulator run as cocotb's runner sets it up (its commands, folder and environment),
    not started: :func:`prepare`."""

    commands: list[list[str]]
    cwd: Path
    env: dict[str, str]

    def run(self, out: IO[str]) -> int:
        """Run it, its output and errors to ``out``; the first non-zero exit code, else 0."""
        for cmd in self.commands:
            code = subprocess.run(
                cmd, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
            if code:
                return code
        return 0


#: the variable cocotb's runner reads to check the results itself (when run by pytest)
PYTEST_ENV = "PYTEST_CURRENT_TEST"
#: :func:`prepare` sets up a run through the process environment and ``sys.path``: one at a time
_PREPARING = threading.Lock()


@functools.cache
def _preparing_class(runner_class: type) -> type:
    class Preparing(runner_class):
        """cocotb's runner, keeping the simulator's commands (``Runner._execute``) instead
        of running them."""

        simulation: Simulation | None = None

        def _execute(self, cmds, cwd) -> None:
            self.simulation = Simulation([[str(part) for part in cmd] for cmd in cmds], Path(cwd), dict(self.env))

    return Preparing


def prepare(
    modules: list[str],
    results_xml: Path,
    testcase: str | None = None,
    extra_env: dict[str, str | None] | None = None,
    seed: int | None = None,
    fabric: str | None = None,
    build_root: Path | None = None,
) -> Simulation:
    """The simulator run :func:`run` would start (no waveform), set up but not started, for a
    caller that runs it in a process of its own: ``make regress`` and ``make fuzz`` run each
    seed so, from worker threads, without a Python process in between to set the run up
    (0.2 s of each seed: an interpreter importing cocotb's runner, cocotb and pytest)."""
    build_root = build_root or BUILD_DIR
    env = {**(extra_env or {}), "WAVES": None, PYTEST_ENV: None}
    with _PREPARING:
        runner = get_runner(False, build_root)  # sets up PATH
        preparing = _preparing_class(type(runner))()
        preparing.build_dir = runner.build_dir
        _test(preparing, modules, testcase, False, results_xml, env, seed, build_root, None, fabric)
    if preparing.simulation is None:
        raise RuntimeError(f"cocotb's runner set up no simulator run for {modules}")
    return preparing.simulation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("modules", nargs="*", default=SIM_MODULES, help="cocotb test modules")
    ap.add_argument("--testcase", help="comma-separated test names to run")
    ap.add_argument("--waves", action="store_true", default=os.environ.get("WAVES") == "1")
    ap.add_argument("--results", default=str(ROOT / "results.xml"))
    ap.add_argument("--seed", type=int)
    ap.add_argument("--fabric", choices=fabrics.FABRICS, help="PCIe fabric (default $FABRIC, else tlp)")
    args = ap.parse_args(argv)
    from cocotb_tools.check_results import get_results  # noqa: PLC0415

    results = run(
        args.modules, args.testcase, args.waves, Path(args.results).resolve(), seed=args.seed, fabric=args.fabric
    )
    total, failed = get_results(results)
    skipped = len(ElementTree.parse(results).getroot().findall(".//testcase/skipped"))
    print(
        f"{total - failed - skipped}/{total} cocotb tests passed, {skipped} skipped, {failed} failed; "
        f"results in {results}"
    )
    if args.waves:
        print(f"waveform: {BUILD_DIR / 'dump.fst'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
