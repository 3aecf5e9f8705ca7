"""Where the testbench's inputs and outputs live (the one definition of each path)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: build output of every tool (ignored by git): Verilator builds, results, coverage, benches
BUILD_DIR = ROOT / "sim_build"
#: one coverage database per seeded run, merged by the regressions
COVERAGE_DIR = BUILD_DIR / "coverage"
HDL_TOP = ROOT / "tb" / "hdl" / "nic_harness.sv"
TESTPLAN = ROOT / "testplan.yaml"
README = ROOT / "README.md"
