"""Where the testbench's inputs and outputs live (the one definition of each path).

Inputs (the HDL harness, the testplan) are found beside the installed ``tb`` package.
Build output goes to ``$NIC_BUILD_DIR`` if set; else, in a source checkout of this
project, to its ``sim_build/``; else (an installed copy, used from another project) to
``./sim_build`` of the current directory, never into the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: True when running from this project's own source tree (not an installed wheel)
SOURCE_CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "tb" / "tests").is_dir()


def default_build_dir() -> Path:
    """Where builds, results, coverage and benchmark output go (see the module docstring)."""
    env = os.environ.get("NIC_BUILD_DIR")
    if env:
        return Path(env).resolve()
    return ROOT / "sim_build" if SOURCE_CHECKOUT else Path.cwd() / "sim_build"


#: build output of every tool (ignored by git): Verilator builds, results, coverage, benches
BUILD_DIR = default_build_dir()
#: one coverage database per seeded run, merged by the regressions
COVERAGE_DIR = BUILD_DIR / "coverage"
HDL_TOP = ROOT / "tb" / "hdl" / "nic_harness.sv"
TESTPLAN = ROOT / "testplan.yaml"
README = ROOT / "README.md"
