"""``make testplan``: each feature of ``testplan.yaml`` with its tests and its coverage.

A testpoint's ``tests`` run in ``make test``; its ``regress`` tests run only in
``make regress`` (pyuvm tests at regression level, tests too slow there on the TLP fabric:
those whose ``skip=`` names ``REGRESS_ONLY`` or ``SLOW_TESTS``).  Every feature keeps at
least one test in ``make test``.

For every testpoint: its tests, whether each exists in the code (found by parsing the
test modules, not by importing them) and how it fared in the last results (the JUnit
files runs left behind: ``results.xml``, ``sim_build/**/*.xml`` -- pytest runs of the
cocotb modules, ``make regress`` per-seed results, benchmarks -- and, for the pytest
tests, ``sim_build/pytest.xml`` if ``pytest --junitxml=sim_build/pytest.xml`` made one),
then its coverpoints from the merged coverage database (``sim_build/coverage/merged.xml``
written by ``make regress``; else every ``sim_build/coverage/*.xml`` merged) with the
bins still uncovered.  Holes are listed at the end: testpoints without tests, tests that
do not exist, never ran or failed, and uncovered bins.

    python -m tb.tools.testplan                  # the report
    python -m tb.tools.testplan --check          # exit 1 if a testpoint has no test or a missing one
"""

from __future__ import annotations

import argparse
import ast
import sys
import xml.etree.ElementTree as et
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tb.paths import BUILD_DIR, COVERAGE_DIR, ROOT, TESTPLAN


@dataclass
class Testpoint:
    id: str
    title: str
    tests: list  # run in make test
    coverage: list = field(default_factory=list)
    regress: list = field(default_factory=list)  # run only in make regress

    @property
    def all_tests(self) -> list:
        return self.tests + self.regress


#: names in a test's ``skip=`` that keep it out of ``make test`` (it runs in ``make regress``)
REGRESS_SKIPS = ("REGRESS_ONLY", "SLOW_TESTS")


def load(path: Path = TESTPLAN) -> list[Testpoint]:
    data = yaml.safe_load(path.read_text())
    return [
        Testpoint(
            f["id"],
            f.get("title", ""),
            list(f.get("tests") or []),
            list(f.get("coverage") or []),
            list(f.get("regress") or []),
        )
        for f in data["features"]
    ]


# -- which tests exist: parse the modules ---------------------------------------------------------------
def _decorator_name(dec) -> str:
    node = dec.func if isinstance(dec, ast.Call) else dec
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def tests_in(path: Path) -> set[str]:
    """Test names defined in one module: cocotb (async def with @cocotb.test), pyuvm
    (class with @pyuvm.test or tb.uvm.testcase's @pyuvm_test) and pytest (test_* functions, also in Test* classes)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in tree.body:
        decorators = {_decorator_name(d) for d in getattr(node, "decorator_list", [])}
        if (
            isinstance(node, ast.AsyncFunctionDef)
            and decorators & {"cocotb.test", "test"}
            or isinstance(node, ast.ClassDef)
            and decorators & {"pyuvm.test", "pyuvm_test"}
            or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name.startswith("test_")
            and path.parent.name == "tests"
        ):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test") and path.parent.name == "tests":
            names |= {
                f"{node.name}::{m.name}"
                for m in node.body
                if isinstance(m, ast.FunctionDef) and m.name.startswith("test_")
            }
    return names


def regress_only_in(path: Path) -> set[str]:
    """The tests of a module that ``make test`` skips (see :data:`REGRESS_SKIPS`)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        for dec in getattr(node, "decorator_list", []):
            skip = next((k.value for k in getattr(dec, "keywords", []) if k.arg == "skip"), None)
            if skip is not None and any(word in ast.unparse(skip) for word in REGRESS_SKIPS):
                names.add(node.name)
    return names


def test_files(root: Path = ROOT) -> list[Path]:
    return (
        sorted(root.glob("tb/tests/test_*.py"))
        + sorted(root.glob("tb/bench/*.py"))
        + sorted(root.glob("tests/test_*.py"))
    )


def existing_tests(root: Path = ROOT) -> dict[str, set[str]]:
    """``file`` (relative, e.g. tb/tests/test_datapath.py) -> test names."""
    return {str(f.relative_to(root)): tests_in(f) for f in test_files(root)}


def regress_only_tests(root: Path = ROOT) -> dict[str, set[str]]:
    """``file`` -> the names of its tests that run only in ``make regress``."""
    return {str(f.relative_to(root)): regress_only_in(f) for f in test_files(root)}


def split_ref(ref: str) -> tuple[str, str]:
    path, _, name = ref.partition("::")
    return path, name


def check(
    points: list[Testpoint], existing: dict[str, set[str]], regress_only: dict[str, set[str]] | None = None
) -> list[str]:
    """Problems that must fail CI: a testpoint without a test in ``make test``, a test that
    does not exist, a regression-only test listed as a ``make test`` one."""
    regress_only = regress_only or {}
    problems = []
    seen = set()
    for tp in points:
        if tp.id in seen:
            problems.append(f"{tp.id}: duplicate testpoint id")
        seen.add(tp.id)
        if not tp.tests:
            problems.append(f"{tp.id}: no test" + (" in make test" if tp.regress else ""))
        for ref in tp.all_tests:
            path, name = split_ref(ref)
            if path not in existing:
                problems.append(f"{tp.id}: {ref}: no such test module")
            elif name not in existing[path]:
                problems.append(f"{tp.id}: {ref}: no such test in {path}")
            elif ref in tp.tests and name in regress_only.get(path, ()):
                problems.append(f"{tp.id}: {ref}: runs only in make regress: list it under regress")
    return problems


# -- results -------------------------------------------------------------------------------------------
def _module_of(ref: str) -> tuple[str, str]:
    path, name = split_ref(ref)
    return path[:-3].replace("/", "."), name


def junit_files() -> list[Path]:
    files = [ROOT / "results.xml"] + sorted(BUILD_DIR.rglob("*.xml"))
    return [f for f in files if f.exists() and COVERAGE_DIR not in f.parents]


def read_results(files: list[Path] | None = None) -> dict[tuple[str, str], dict]:
    """(module, test) -> {"pass": n, "fail": n, "skip": n}, over every JUnit file found.
    Parametrized names (``x/num_vfs=8``, ``test_x[a]``) count for their test."""
    out: dict = defaultdict(lambda: defaultdict(int))
    for f in files if files is not None else junit_files():
        try:
            root = et.parse(f).getroot()
        except et.ParseError:
            continue
        if root.tag not in ("testsuites", "testsuite"):
            continue
        for case in root.iter("testcase"):
            module, name = case.get("classname", ""), case.get("name", "")
            name = name.split("/")[0].split("[")[0]
            status = "pass"
            for child in case:
                if child.tag in ("failure", "error"):
                    status = "fail"
                elif child.tag == "skipped":
                    status = "skip"
            out[module, name][status] += 1
    return out


def status_of(counts: dict | None) -> str:
    """ "passed", "passed 20x", "FAILED 1 of 20 runs", "skipped", "not run"."""
    if not counts:
        return "not run"
    runs = counts.get("pass", 0) + counts.get("fail", 0)
    if counts.get("fail"):
        return f"FAILED {counts['fail']} of {runs} runs"
    if runs:
        return "passed" if runs == 1 else f"passed {runs}x"
    return "skipped"


# -- coverage ------------------------------------------------------------------------------------------------
def coverage_file() -> Path | None:
    merged = COVERAGE_DIR / "merged.xml"
    if merged.exists():
        return merged
    runs = sorted(f for f in COVERAGE_DIR.glob("*.xml") if f.name != "merged.xml")
    if not runs:
        return None
    from tb.tools.regress import merge  # noqa: PLC0415

    return merge(runs, COVERAGE_DIR / "all_runs.xml")


def coverage_names() -> set[str]:
    """Every coverpoint, cross and group of the coverage model."""
    from cocotb_coverage.coverage import coverage_db  # noqa: PLC0415

    import tb.fuzz.coverage  # noqa: PLC0415
    import tb.uvm.coverage  # noqa: PLC0415, F401  (defines the model)

    return {name for name in coverage_db if name.startswith("nic")}


# -- report ------------------------------------------------------------------------------------------------------
def report(points: list[Testpoint]) -> tuple[str, list[str]]:
    from tb.tools.regress import read_coverage  # noqa: PLC0415

    existing = existing_tests()
    results = read_results()
    cov_path = coverage_file()
    nodes, cps = read_coverage(cov_path) if cov_path else ({}, {})
    lines, holes = [], []
    problems = check(points, existing, regress_only_tests())
    lines.append(
        f"testplan {TESTPLAN.name}: {len(points)} testpoints; results from {len(junit_files())} JUnit "
        f"file(s); coverage from {cov_path or 'nothing yet (run make regress)'}"
    )
    for tp in points:
        lines.append("")
        lines.append(f"[{tp.id}] {tp.title}")
        if not tp.tests:
            lines.append("    (no test)")
            holes.append(f"{tp.id}: no test")
        for ref in tp.all_tests:
            path, name = split_ref(ref)
            exists = name in existing.get(path, ())
            st = status_of(results.get(_module_of(ref))) if exists else "MISSING"
            kind = "test" if ref in tp.tests else "regress"
            lines.append(f"    {kind:<7} {ref:<78} {st}")
            if not exists:
                holes.append(f"{tp.id}: {ref} does not exist")
            elif st.startswith("FAILED") or st == "not run":
                holes.append(f"{tp.id}: {ref} {st}")
        for name in tp.coverage:
            if name in nodes:
                cov, size = nodes[name]
                missing = [
                    f"{p.name[len(name) + 1 :] or p.name}={b}" if p.name != name else b
                    for p in cps.values()
                    if p.name == name or p.name.startswith(name + ".")
                    for b, h in p.bins
                    if h < p.at_least
                ]
                lines.append(f"    coverage {name:<40} {100 * cov / size:5.1f}% ({cov}/{size})")
                if missing:
                    lines.append(f"        uncovered: {', '.join(missing)}")
                    holes += [f"{tp.id}: {name} bin {m} uncovered" for m in missing]
            else:
                lines.append(f"    coverage {name:<40} no data")
                holes.append(f"{tp.id}: {name} has no coverage data")
    if "nic" in nodes:
        cov, size = nodes["nic"]
        lines.append("")
        lines.append(f"total functional coverage: {100 * cov / size:.1f}% ({cov}/{size} bins)")
    mapped = {split_ref(r) for tp in points for r in tp.all_tests}
    unmapped = sorted(f"{p}::{n}" for p, names in existing.items() for n in names if (p, n) not in mapped)
    lines.append("")
    lines.append(f"holes ({len(holes)}):")
    lines += [f"  {h}" for h in holes] or ["  none"]
    if unmapped:
        lines.append("")
        lines.append(f"tests no testpoint names ({len(unmapped)}): " + ", ".join(unmapped))
    if problems:
        lines.append("")
        lines.append("TESTPLAN ERRORS:")
        lines += [f"  {p}" for p in problems]
    return "\n".join(lines) + "\n", problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check the testplan against the code")
    args = ap.parse_args(argv)
    points = load()
    if args.check:
        problems = check(points, existing_tests(), regress_only_tests())
        print("\n".join(problems) or f"testplan ok: {len(points)} testpoints")
        return 1 if problems else 0
    text, problems = report(points)
    print(text, end="")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
