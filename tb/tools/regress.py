"""``make regress SEEDS=N``: the pyuvm tests over N seeds in parallel, each seed followed by
its hostile-VF campaign (:mod:`tb.fuzz`), merged coverage of both, a report.

Each seed is one simulator process running every test of ``tb.tests.test_uvm`` with
``NIC_UVM_LEVEL=regress`` and ``COCOTB_RANDOM_SEED=<seed>``, then the campaign's episodes
for the seed (``tb.tests.test_fuzz``, its records and report in ``sim_build/fuzz/`` as
``make fuzz`` writes them); workers share the one Verilator build (``tb.tools.runner``
builds it once, under a lock) and each writes its own results file, log and coverage file::

    sim_build/regress/results/<seed>-<fabric>.xml     JUnit results
    sim_build/regress/logs/<seed>-<fabric>.log        simulator output
    sim_build/regress/records/<fabric>/<test>-<seed>-<fabric>.json   what each scoreboard saw
    sim_build/coverage/<seed>.xml            cocotb-coverage database of the run (campaign included)
    sim_build/coverage/merged.xml            all seeds merged (also used by ``make testplan``)
    sim_build/regress/report.txt, report.html

The fabric is ``--fabric`` (``$FABRIC``; regressions default to the transaction-level
``fast`` one).  ``--fabric both`` runs every seed on both fabrics and compares what each
test's scoreboard saw (:mod:`tb.uvm.record`): any difference fails the seed::

    python -m tb.tools.regress --seeds 20 --jobs 2          # seeds 1..20
    python -m tb.tools.regress --seed 7                     # one seed, e.g. to reproduce a failure
    python -m tb.tools.regress --seeds 5 --fabric both      # equivalence of the fabrics, 5 seeds
    python -m tb.tools.regress --seeds 4 --first-seed 100
    python -m tb.tools.regress --report-only                # the report again, from the last results
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as et
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import fabric
from tb.paths import BUILD_DIR, COVERAGE_DIR, ROOT
from tb.tools.runner import SLOW_MODULES, get_runner, prepare
from tb.uvm.record import compare, load

REGRESS_DIR = BUILD_DIR / "regress"
RECORDS_DIR = REGRESS_DIR / "records"
MERGED = COVERAGE_DIR / "merged.xml"
MODULE = "tb.tests.test_uvm"
#: ``--fabric both``: each seed on both fabrics, records compared
BOTH = "both"
#: the fabric regressions run on unless told otherwise
DEFAULT_FABRIC = fabric.FAST


@dataclass
class SeedResult:
    seed: int
    fabric: str = DEFAULT_FABRIC
    wall_s: float = 0.0
    tests: dict = field(default_factory=dict)  # test name -> "pass" / "fail" / "skip"
    messages: dict = field(default_factory=dict)  # test name -> failure message
    error: str = ""  # simulator crash, missing results
    differences: list = field(default_factory=list)  # vs the other fabric (``--fabric both``)
    race_differences: list = field(default_factory=list)  # the same, in tests that race DMA on purpose
    campaign: dict | None = None  # the hostile-VF campaign run in the same process (tb.fuzz.runner.seed_result)

    @property
    def failed(self) -> list[str]:
        return [t for t, s in self.tests.items() if s == "fail"]

    @property
    def ok(self) -> bool:
        return not self.error and not self.failed and bool(self.tests) and not self.differences

    @property
    def name(self) -> str:
        return f"{self.seed}-{self.fabric}"


def repro_command(seed: int, test: str | None = None, fabric_name: str = DEFAULT_FABRIC) -> str:
    case = f" --testcase {test}" if test else ""
    return (
        f"FABRIC={fabric_name} NIC_UVM_LEVEL=regress PYTHONHASHSEED=0 "
        f".venv/bin/python -m tb.tools.runner {MODULE} --seed {seed}{case}"
    )


_EXCEPTION = re.compile(r"^[\s|]*(\w+(?:Error|Exception)): (.*)$")
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def failure_message(child) -> list[str]:
    """The failure's message; for an exception group, the first exception inside it (with the
    file and line it was raised at), which says more than 'Multiple exceptions in test'."""
    message = (child.get("message") or "").strip()
    text = child.text or ""
    if message.startswith("Multiple exceptions") or not message:
        where = ""
        for line in text.splitlines():
            frame = _FRAME.search(line)
            if frame:
                where = f"{frame.group(1).replace(str(ROOT) + '/', '')}:{frame.group(2)}"
            found = _EXCEPTION.match(line)
            if found and found.group(1) != "ExceptionGroup":
                return [f"{found.group(1)}: {found.group(2)} (at {where})" if where else line.strip(" |")]
    return (message or text.strip()).splitlines()[0:1]


def read_junit(path: Path, times: dict | None = None) -> tuple[dict, dict]:
    """(test name -> pass/fail/skip, test name -> message) of a cocotb JUnit file; each
    test's wall time (s) into ``times`` if given."""
    tests, messages = {}, {}
    for case in et.parse(path).getroot().iter("testcase"):
        name = case.get("name")
        if times is not None:
            times[name] = float(case.get("time", 0))
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail"
                messages[name] = failure_message(child)
            elif child.tag == "skipped":
                status = "skip"
        tests[name] = status
    return tests, messages


def run_seed(
    seed: int,
    testcase: str | None = None,
    fabric_name: str = DEFAULT_FABRIC,
    coverage: bool = True,
    base: Path = REGRESS_DIR,
    campaign_episodes: int = 0,
) -> SeedResult:
    """Run every pyuvm test at ``seed`` on ``fabric_name`` (one simulator process); results,
    log and scoreboard records go under ``base`` (records in ``records/<fabric>/``), its
    coverage (if ``coverage``) to the coverage directory.  With ``campaign_episodes``, the
    hostile-VF campaign of the seed (:mod:`tb.fuzz`) runs in the same process after the
    pyuvm tests (saving a simulator start-up per seed): its episodes go to the campaign's
    own files, as ``make fuzz`` writes them, its result to ``res.campaign``, and the
    process's coverage, the campaign's included, to the seed's coverage file."""
    from tb.fuzz import runner as fuzz  # noqa: PLC0415 -- tb.fuzz.runner imports this module

    res = SeedResult(seed, fabric_name)
    results = base / "results" / f"{res.name}.xml"
    log = base / "logs" / f"{res.name}.log"
    records = (RECORDS_DIR if base == REGRESS_DIR else base / "records") / fabric_name
    for directory in (results.parent, log.parent, records):
        directory.mkdir(parents=True, exist_ok=True)
    if coverage:
        (COVERAGE_DIR / f"{seed}.xml").unlink(missing_ok=True)
    results.unlink(missing_ok=True)
    modules = [MODULE, fuzz.MODULE] if campaign_episodes else [MODULE]
    env: dict[str, str | None] = {
        "NIC_UVM_LEVEL": "regress",
        "PYTHONHASHSEED": "0",
        "NIC_COVERAGE_DIR": str(COVERAGE_DIR if coverage else base / "coverage-unmerged"),
        "NIC_RECORD_DIR": str(records),
    }
    if campaign_episodes:
        env.update(fuzz.seed_environment(seed, campaign_episodes, coverage_name=str(seed)))
    t0 = time.monotonic()
    simulation = prepare(modules, results, testcase, env, seed, fabric_name)
    with open(log, "w") as out:
        exit_code = simulation.run(out)
    res.wall_s = time.monotonic() - t0
    times: dict[str, float] = {}
    if results.exists():
        res.tests, res.messages = read_junit(results, times)
    if not res.tests:
        res.error = f"no results (exit code {exit_code}); see {log}"
    if campaign_episodes:
        passed = res.tests.get(fuzz.TEST) == "pass"
        res.campaign = fuzz.seed_result(seed, 0 if passed else exit_code or 1, times.get(fuzz.TEST, 0.0), log)
    return res


def record_files(fabric_name: str, seed: int) -> dict[str, dict]:
    """Test name -> the record a run of ``seed`` on ``fabric_name`` left (one per test)."""
    found = {}
    for path in sorted((RECORDS_DIR / fabric_name).glob(f"*-{fabric_name}.json")):
        rec = load(path)
        if rec["meta"].get("regression_seed") == seed:
            found[rec["meta"]["test"]] = rec
    return found


def compare_fabrics(seed: int, first: str = fabric.TLP, second: str = fabric.FAST) -> tuple[list[str], list[str]]:
    """What the scoreboards saw at ``seed`` on ``first`` and on ``second``, test by test:
    (differences in the tests that must agree, differences in the tests that race DMA on
    purpose, for information)."""
    a, b = record_files(first, seed), record_files(second, seed)
    must = [f"{test}: recorded on {first} only" for test in sorted(set(a) - set(b))]
    must += [f"{test}: recorded on {second} only" for test in sorted(set(b) - set(a))]
    races = []
    for test in sorted(set(a) & set(b)):
        lines = [f"{test}: {line}" for line in compare(a[test], b[test])]
        equivalent = all(rec[test]["meta"].get("fabric_equivalent", True) for rec in (a, b))
        (must if equivalent else races).extend(lines)
    return must, races


# -- coverage -----------------------------------------------------------------------------------
@dataclass
class Point:
    name: str
    covered: int
    size: int
    bins: list  # (bin, hits)
    at_least: int = 1

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.size if self.size else 0.0


def merge(files: list[Path], out: Path = MERGED) -> Path | None:
    from cocotb_coverage.coverage import merge_coverage  # noqa: PLC0415

    files = [f for f in files if f.exists()]
    if not files:
        return None
    merge_coverage(lambda *_: None, str(out), *map(str, files))
    return out


def read_coverage(path: Path) -> tuple[dict, dict]:
    """(node name -> (covered, size)) of every group and (coverpoint name -> Point), from an
    exported or merged cocotb-coverage XML file; names without the leading ``top.``."""
    nodes, points = {}, {}
    for elem in et.parse(path).getroot().iter():
        name = elem.get("abs_name", "")
        if "bin" in elem.tag or not name:
            continue
        name = name.removeprefix("top.")
        covered, size = int(elem.get("coverage", 0)), int(elem.get("size", 0))
        nodes[name] = (covered, size)
        if elem.get("weight") is not None:
            bins = [(b.get("bin"), int(b.get("hits"))) for b in elem if "bin" in b.tag]
            points[name] = Point(name, covered, size, bins, int(elem.get("at_least", 1)))
    return nodes, points


def uncovered(points: dict) -> list[tuple[str, str]]:
    return [(p.name, b) for p in points.values() for b, hits in p.bins if hits < p.at_least]


# -- report -------------------------------------------------------------------------------------
def report(results: list[SeedResult], merged: Path | None, wall_s: float, jobs: int) -> tuple[str, str]:
    from tb.uvm.coverage import GROUPS  # noqa: PLC0415

    lines, rows = [], []
    passed = sum(r.ok for r in results)
    lines.append(
        f"regression of {MODULE}: {len(results)} seed(s), {passed} passed, {len(results) - passed} failed; "
        f"{jobs} worker(s), wall time {wall_s:.0f} s"
    )
    nodes, points = read_coverage(merged) if merged else ({}, {})
    if "nic" in nodes:
        cov, size = nodes["nic"]
        lines.append(f"total functional coverage: {100 * cov / size:.1f}% ({cov}/{size} bins), merged in {merged}")
    lines.append("")
    lines.append("per covergroup:")
    for group, doc in GROUPS.items():
        if group in nodes:
            cov, size = nodes[group]
            lines.append(f"  {group:<14} {100 * cov / size:5.1f}%  {cov:>3}/{size:<3}  {doc}")
            for p in sorted(points.values(), key=lambda p: p.name):
                if p.name.startswith(group + "."):
                    lines.append(f"      {p.name[len(group) + 1 :]:<26} {p.percent:5.1f}%  {p.covered}/{p.size}")
    holes = uncovered(points)
    lines.append("")
    lines.append(f"uncovered bins ({len(holes)}):")
    lines += [f"  {name}: {b}" for name, b in holes]
    lines.append("")
    lines.append("seeds:")
    for r in results:
        status = "PASS" if r.ok else "FAIL"
        tests = ", ".join(f"{t}:{s}" for t, s in r.tests.items()) or r.error
        lines.append(f"  seed {r.seed:<6} {r.fabric:<4} {status}  {r.wall_s:6.1f} s  {tests}")
        for t in r.failed:
            lines.append(f"      {t}: {' '.join(r.messages.get(t, []))}")
            lines.append(f"      reproduce: {repro_command(r.seed, t, r.fabric)}")
        if r.error:
            lines.append(f"      reproduce: {repro_command(r.seed, fabric_name=r.fabric)}")
        for line in r.differences:
            lines.append(f"      differs from the other fabric: {line}")
        if r.race_differences and r.fabric == fabric.TLP:
            lines.append(
                f"      {len(r.race_differences)} difference(s) in tests that race DMA on purpose "
                "(not compared; see the records)"
            )
    lines += fabric_summary(results)
    text = "\n".join(lines) + "\n"

    def esc(s):
        return html.escape(str(s))

    for r in results:
        cls = "pass" if r.ok else "fail"
        fails = "<br>".join(
            f"{esc(t)}: {esc(' '.join(r.messages.get(t, [])))}<br>"
            f"<code>{esc(repro_command(r.seed, t, r.fabric))}</code>"
            for t in r.failed
        ) or esc(r.error)
        rows.append(
            f"<tr class={cls}><td>{r.seed} ({r.fabric})</td><td>{'PASS' if r.ok else 'FAIL'}</td>"
            f"<td>{r.wall_s:.1f}</td>"
            f"<td>{esc(', '.join(f'{t}:{s}' for t, s in r.tests.items()))}</td><td>{fails}</td></tr>"
        )
    groups = []
    for group, doc in GROUPS.items():
        if group in nodes:
            cov, size = nodes[group]
            sub = "".join(
                f"<tr><td>&nbsp;&nbsp;{esc(p.name)}</td><td>{p.percent:.1f}%</td><td>{p.covered}/{p.size}</td>"
                f"<td>{esc(', '.join(b for b, h in p.bins if h < p.at_least))}</td></tr>"
                for p in sorted(points.values(), key=lambda p: p.name)
                if p.name.startswith(group + ".")
            )
            groups.append(
                f"<tr class=group><td>{esc(group)}</td><td>{100 * cov / size:.1f}%</td><td>{cov}/{size}</td>"
                f"<td>{esc(doc)}</td></tr>{sub}"
            )
    total = ""
    if "nic" in nodes:
        cov, size = nodes["nic"]
        total = f"<p><b>Total functional coverage: {100 * cov / size:.1f}%</b> ({cov}/{size} bins)</p>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>NIC regression</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}
tr.fail{{background:#fdd}} tr.pass{{background:#dfd}} tr.group{{background:#eef;font-weight:bold}}</style></head><body>
<h1>Regression of {MODULE}</h1><p>{esc(lines[0])}</p>{total}
<h2>Coverage by covergroup (uncovered bins listed)</h2>
<table><tr><th>covergroup / coverpoint</th><th>coverage</th><th>bins</th><th>uncovered bins / description</th></tr>
{"".join(groups)}</table>
<h2>Seeds</h2><table><tr><th>seed</th><th>result</th><th>wall s</th><th>tests</th>
<th>failures and how to reproduce</th></tr>
{"".join(rows)}</table></body></html>
"""
    return text, page


def fabric_summary(results: list[SeedResult]) -> list[str]:
    """With seeds run on both fabrics: whether their scoreboards agreed, and the wall-time ratio."""
    by_seed: dict[int, dict[str, SeedResult]] = {}
    for r in results:
        by_seed.setdefault(r.seed, {})[r.fabric] = r
    pairs = {seed: runs for seed, runs in by_seed.items() if len(runs) == len(fabric.FABRICS)}
    if not pairs:
        return []
    equal = sum(not any(r.differences for r in runs.values()) for runs in pairs.values())
    lines = [
        "",
        f"fabrics compared on {len(pairs)} seed(s): {equal} with identical scoreboard events in every "
        "fabric-equivalent test",
    ]
    for seed, runs in sorted(pairs.items()):
        tlp, fast = runs[fabric.TLP], runs[fabric.FAST]
        lines.append(
            f"  seed {seed:<6} tlp {tlp.wall_s:6.1f} s, fast {fast.wall_s:6.1f} s: "
            f"{tlp.wall_s / max(fast.wall_s, 1e-9):.1f}x; {'same events' if not tlp.differences else 'DIFFERENT'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("SEEDS", "20")), help="number of seeds")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--seed", type=int, action="append", help="run exactly these seeds (repeatable)")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2")))
    ap.add_argument("--testcase", help="only these tests (comma-separated)")
    ap.add_argument(
        "--fabric",
        default=os.environ.get("FABRIC") or DEFAULT_FABRIC,
        choices=[*fabric.FABRICS, BOTH],
        help=f"fabric of the runs (default $FABRIC, else {DEFAULT_FABRIC}); 'both' compares them seed by seed",
    )
    ap.add_argument(
        "--fuzz-episodes",
        type=int,
        default=int(os.environ.get("EPISODES", "8")),
        help="episodes per seed of the hostile-VF campaign run after the pyuvm tests (0: none)",
    )
    ap.add_argument(
        "--slow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the cocotb tests too slow for make test on the TLP fabric (NIC_SLOW_TESTS=1)",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the report from the last regression's results, running nothing",
    )
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(*reload_last())
    seeds = args.seed or list(range(args.first_seed, args.first_seed + args.seeds))
    for sub in ("results", "logs", *(f"records/{name}" for name in fabric.FABRICS)):  # this regression only
        (REGRESS_DIR / sub).mkdir(parents=True, exist_ok=True)
        for old in (REGRESS_DIR / sub).iterdir():
            old.unlink()
    COVERAGE_DIR.mkdir(parents=True, exist_ok=True)
    get_runner()  # build once, before the workers start
    fabrics = list(fabric.FABRICS) if args.fabric == BOTH else [args.fabric]
    runs = [(seed, name) for seed in seeds for name in fabrics]
    # each seed's campaign runs in the process of its pyuvm tests (on the fabric whose
    # coverage counts), unless only some tests run
    campaign = 0 if args.testcase else args.fuzz_episodes
    if campaign:
        from tb.fuzz import runner as fuzz  # noqa: PLC0415

        fuzz.forget_coverage()
    print(f"regress: {len(seeds)} seed(s) on {'/'.join(fabrics)}, {args.jobs} worker(s): {seeds}", flush=True)
    t0 = time.monotonic()
    results = []

    def run(seed_fabric: tuple[int, str]) -> SeedResult:
        # coverage from one fabric's runs: the other's must be the same events
        seed, name = seed_fabric
        last = name == fabrics[-1]
        return run_seed(seed, args.testcase, name, coverage=last, campaign_episodes=campaign if last else 0)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for res in pool.map(run, runs):
            print(
                f"  seed {res.seed} ({res.fabric}): {'PASS' if res.ok else 'FAIL'} in {res.wall_s:.0f} s"
                + (f" ({', '.join(res.failed) or res.error})" if not res.ok else ""),
                flush=True,
            )
            if res.campaign:
                print(f"  {fuzz.status_line(res.campaign).strip()} (hostile-VF campaign, same process)", flush=True)
            results.append(res)
    if args.fabric == BOTH:
        for seed in seeds:
            differences, races = compare_fabrics(seed)
            for res in results:
                if res.seed == seed:
                    res.differences, res.race_differences = differences, races
            verdict = "same scoreboard events on both fabrics" if not differences else "DIFFERENT"
            print(f"  seed {seed}: {verdict} (fabric-equivalent tests)")
    wall = time.monotonic() - t0
    (REGRESS_DIR / "run.json").write_text(
        json.dumps(
            {
                "wall_s": wall,
                "jobs": args.jobs,
                "runs": [[r.seed, r.fabric, r.wall_s, r.differences, r.race_differences] for r in results],
            }
        )
    )
    slow_ok = True
    if args.slow:
        slow_ok, slow_text = run_slow_tests()
        print(slow_text, flush=True)
    fuzz_ok = True
    if campaign:
        fuzz_text, fuzz_ok = fuzz.write_report(
            [r.campaign for r in results if r.campaign],
            campaign,
            wall,
            args.jobs,
            [COVERAGE_DIR / f"{seed}.xml" for seed in seeds],
        )
        print(fuzz_text)
    elif args.fuzz_episodes:
        from tb.fuzz.runner import run_seeds  # noqa: PLC0415

        fuzz_text, fuzz_ok = run_seeds(seeds, args.fuzz_episodes, args.jobs, fabrics[-1])
        print(fuzz_text)
    return write_report(results, wall, args.jobs) or (0 if fuzz_ok and slow_ok else 1)


def run_slow_tests() -> tuple[bool, str]:
    """The cocotb tests too slow for ``make test`` on the TLP fabric (``NIC_SLOW_TESTS=1``),
    there, in one simulator process; (passed, a line for the report)."""
    results = REGRESS_DIR / "results" / "slow-tlp.xml"
    log = REGRESS_DIR / "logs" / "slow-tlp.log"
    t0 = time.monotonic()
    simulation = prepare(list(SLOW_MODULES), results, extra_env={"NIC_SLOW_TESTS": "1"}, fabric=fabric.TLP)
    with open(log, "w") as out:
        simulation.run(out)
    tests, _messages = read_junit(results) if results.exists() else ({}, {})
    failed = [t for t, status in tests.items() if status == "fail"]
    ok = bool(tests) and not failed
    verdict = "PASS" if ok else f"FAIL ({', '.join(failed) or 'no results'})"
    return ok, f"slow tests on the TLP fabric ({', '.join(SLOW_MODULES)}): {verdict} in {time.monotonic() - t0:.0f} s"


def reload_last() -> tuple[list[SeedResult], float, int]:
    """The last regression's seeds and results, from sim_build/regress/."""
    run = json.loads((REGRESS_DIR / "run.json").read_text())
    results = []
    for seed, fabric_name, wall, differences, races in run["runs"]:
        res = SeedResult(int(seed), fabric_name, wall, differences=differences, race_differences=races)
        path = REGRESS_DIR / "results" / f"{res.name}.xml"
        if path.exists():
            res.tests, res.messages = read_junit(path)
        else:
            res.error = "no results"
        results.append(res)
    return results, run["wall_s"], run["jobs"]


def write_report(results: list[SeedResult], wall: float, jobs: int) -> int:
    merged = merge(
        [COVERAGE_DIR / f"{seed}.xml" for seed in sorted({r.seed for r in results})]
        + sorted(COVERAGE_DIR.glob("fuzz-*.xml"))
    )
    text, page = report(results, merged, wall, jobs)
    (REGRESS_DIR / "report.txt").write_text(text)
    (REGRESS_DIR / "report.html").write_text(page)
    print(text)
    print(f"report: {REGRESS_DIR / 'report.txt'} and {REGRESS_DIR / 'report.html'}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
