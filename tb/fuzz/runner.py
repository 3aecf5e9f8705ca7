"""``make fuzz SEEDS=N``: the hostile-VF campaign over N seeds in parallel, with a report.

Each seed is one simulator process running ``tb.tests.test_fuzz`` with ``NIC_FUZZ_SEED=<seed>``;
every episode is appended to ``sim_build/fuzz/episodes/<seed>.jsonl`` as it ends, so a
seed whose simulation died still names the episode and scenario it died in::

    python -m tb.fuzz --seeds 50 --jobs 2              # seeds 1..50 (also: make fuzz SEEDS=50)
    python -m tb.fuzz --seed 7 --episodes 12           # one seed, e.g. to reproduce a failure

The report (``sim_build/fuzz/report.txt``) gives the totals over every episode (escaped
exceptions, unexplained frame losses, silent hostile acts, isolation breaks...), the
episodes per scenario kind, the ``nic.fuzz`` coverage, and for each failing episode its
seed, scenario and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fabric import FABRICS
from tb.paths import BUILD_DIR
from tb.tools.regress import COVERAGE_DIR, merge, read_coverage, read_junit, uncovered
from tb.tools.runner import prepare

FUZZ_DIR = BUILD_DIR / "fuzz"
MODULE = "tb.tests.test_fuzz"
#: its one test
TEST = "hostile_vf_campaign"
DEFAULT_EPISODES = 8
#: the campaign's coverage merged (not ``fuzz-*.xml``: the regression merges those, one per seed)
MERGED = COVERAGE_DIR / "merged-fuzz.xml"
TOTALS = (
    "escaped",
    "contained",
    "unexplained_losses",
    "corrupted",
    "silent",
    "isolation",
    "canary_changed",
    "over_time",
)


def repro_command(seed: int, episodes: int) -> str:
    return f"NIC_FUZZ_SEED={seed} NIC_FUZZ_EPISODES={episodes} .venv/bin/python -m tb.tools.runner {MODULE}"


def seed_environment(seed: int, episodes: int, coverage_name: str | None = None) -> dict[str, str]:
    """What a simulator process needs to run the campaign of ``seed`` (``tb.tests.test_fuzz``),
    its episodes file made empty: alone (:func:`run_seed`) or after the pyuvm tests of the
    same seed, in their process (``make regress``, :func:`tb.tools.regress.run_seed`), where
    the campaign exports the process's coverage to the pyuvm tests' file (``coverage_name``)
    so that no hit is counted twice."""
    for sub in ("logs", "episodes", "results"):
        (FUZZ_DIR / sub).mkdir(parents=True, exist_ok=True)
    records = episodes_file(seed)
    records.unlink(missing_ok=True)
    env = {
        "NIC_FUZZ_SEED": str(seed),
        "NIC_FUZZ_EPISODES": str(episodes),
        "NIC_FUZZ_RESULTS": str(records),
    }
    if coverage_name:
        env["NIC_FUZZ_COVERAGE"] = coverage_name
    return env


def episodes_file(seed: int) -> Path:
    return FUZZ_DIR / "episodes" / f"{seed}.jsonl"


def seed_result(seed: int, exit_code: int, wall_s: float, log: Path) -> dict:
    """What the episodes file of ``seed`` says (the episodes that ended, the one the
    simulation died in, if any), plus how its process ended."""
    records = episodes_file(seed)
    done, started = [], None
    if records.exists():
        for line in records.read_text().splitlines():
            item = json.loads(line)
            if "started" in item:
                started = item["started"]
            else:
                done.append(item["episode"])
                started = None
    return {
        "seed": seed,
        "wall_s": wall_s,
        "exit": exit_code,
        "episodes": done,
        "died_in": started,
        "log": str(log),
    }


def run_seed(seed: int, episodes: int, fabric_name: str | None = None) -> dict:
    """Run one seed (on ``fabric_name``, default ``$FABRIC``) in a simulator process of its
    own; return :func:`seed_result`."""
    log = FUZZ_DIR / "logs" / f"{seed}.log"
    env = {**seed_environment(seed, episodes), "NIC_COVERAGE_DIR": str(COVERAGE_DIR), "PYTHONHASHSEED": "0"}
    results = FUZZ_DIR / "results" / f"{seed}.xml"
    results.unlink(missing_ok=True)
    t0 = time.monotonic()
    simulation = prepare([MODULE], results, extra_env=env, fabric=fabric_name)
    with open(log, "w") as out:
        exit_code = simulation.run(out)
    # the simulator ends normally when a test fails: the campaign's test result says whether it passed
    passed = results.exists() and read_junit(results)[0].get(TEST) == "pass"
    return seed_result(seed, 0 if passed else exit_code or 1, time.monotonic() - t0, log)


def failures(episode: dict) -> list[str]:
    return [f"{key}: {episode[key]}" for key in TOTALS if episode[key]]


def report(seeds: list[dict], episodes: int, wall_s: float, jobs: int, coverage: list[Path]) -> tuple[str, bool]:
    """The report of a campaign over ``seeds``, its ``nic.fuzz`` coverage from the
    ``coverage`` files; (text, whether every seed passed)."""
    all_episodes = [e for s in seeds for e in s["episodes"]]
    died = [s for s in seeds if s["died_in"] or (s["exit"] and not any(failures(e) for e in s["episodes"]))]
    lines = [
        f"hostile-VF campaign ({MODULE}): {len(seeds)} seed(s) x {episodes} episode(s) on {jobs} worker(s); "
        f"{len(all_episodes)} episodes ran in {wall_s:.0f} s wall"
    ]
    acts = sum(e["acts"] for e in all_episodes)
    hostile = sum(e["hostile"] for e in all_episodes)
    frames = sum(e["victim_frames"] for e in all_episodes)
    lines.append(
        f"acts {acts} ({hostile} hostile); victim frames {frames} "
        f"({sum(e['lost'] for e in all_episodes)} lost, all explained unless listed below)"
    )
    lines.append("")
    lines.append("totals (each must be 0):")
    for key in TOTALS:
        value = sum(len(e[key]) if isinstance(e[key], list) else int(e[key]) for e in all_episodes)
        lines.append(f"  {key:<20} {value}")
    lines.append(f"  {'simulations died':<20} {len(died)}")
    lines.append("")
    lines.append("episodes per scenario kind:")
    per_kind = collections.Counter(e["scenario"] for e in all_episodes)
    bad_kind = collections.Counter(e["scenario"] for e in all_episodes if failures(e))
    for kind, n in sorted(per_kind.items()):
        lines.append(f"  {kind:<16} {n:4d}  ({bad_kind[kind]} failed)")
    merged = merge(coverage, MERGED)
    if merged:
        nodes, points = read_coverage(merged)
        if "nic.fuzz" in nodes:
            cov, size = nodes["nic.fuzz"]
            lines += ["", f"coverage nic.fuzz: {100 * cov / size:.1f}% ({cov}/{size} bins)"]
            holes = [h for h in uncovered(points) if h[0].startswith("nic.fuzz")]
            lines += [f"  uncovered: {name}: {b}" for name, b in holes]
    lines += ["", "failures:"]
    for s in seeds:
        for e in s["episodes"]:
            if failures(e):
                lines.append(f"  seed {s['seed']} episode {e['index']} ({e['scenario']}): {'; '.join(failures(e))}")
                lines.append(f"    reproduce: {repro_command(s['seed'], episodes)}")
        if s in died:
            where = f"episode {s['died_in']['index']} ({s['died_in']['scenario']})" if s["died_in"] else "set-up"
            lines.append(f"  seed {s['seed']}: the simulation failed in {where}; log {s['log']}")
            lines.append(f"    reproduce: {repro_command(s['seed'], episodes)}")
    ok = not died and not any(failures(e) for e in all_episodes)
    if ok:
        lines.append("  none")
    return "\n".join(lines) + "\n", ok


def forget_coverage() -> None:
    """Remove the campaign coverage files of earlier runs (before a run's seeds start)."""
    COVERAGE_DIR.mkdir(parents=True, exist_ok=True)
    for old in COVERAGE_DIR.glob("fuzz-*.xml"):
        old.unlink()


def status_line(res: dict) -> str:
    bad = [e for e in res["episodes"] if failures(e)]
    status = "FAIL" if bad or res["died_in"] or res["exit"] else "PASS"
    return f"  seed {res['seed']}: {status}, {len(res['episodes'])} episodes in {res['wall_s']:.0f} s"


def write_report(
    results: list[dict], episodes: int, wall_s: float, jobs: int, coverage: list[Path] | None = None
) -> tuple[str, bool]:
    """Write the report and the run's results to :data:`FUZZ_DIR`; return the report and
    whether every seed passed. ``coverage``: the files holding the campaign's coverage (by
    default the campaign's own, ``fuzz-<seed>.xml``)."""
    if coverage is None:
        coverage = sorted(COVERAGE_DIR.glob("fuzz-*.xml"))
    text, ok = report(results, episodes, wall_s, jobs, coverage)
    (FUZZ_DIR / "report.txt").write_text(text)
    (FUZZ_DIR / "run.json").write_text(json.dumps(results))
    return text, ok


def run_seeds(seeds: list[int], episodes: int, jobs: int, fabric_name: str | None = None) -> tuple[str, bool]:
    """Run ``seeds`` on ``jobs`` workers (on ``fabric_name``, default ``$FABRIC``); write and
    return the report and whether all passed (each seed makes its folders: :func:`seed_environment`)."""
    forget_coverage()
    print(f"fuzz: {len(seeds)} seed(s) x {episodes} episodes on {jobs} worker(s)", flush=True)
    t0 = time.monotonic()
    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for res in pool.map(lambda s: run_seed(s, episodes, fabric_name), seeds):
            print(status_line(res), flush=True)
            results.append(res)
    return write_report(results, episodes, time.monotonic() - t0, jobs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("SEEDS", "20")))
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--seed", type=int, action="append", help="run exactly these seeds (repeatable)")
    ap.add_argument("--episodes", type=int, default=int(os.environ.get("EPISODES", DEFAULT_EPISODES)))
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2")))
    ap.add_argument("--fabric", choices=FABRICS, help="fabric of the runs (default $FABRIC, else tlp)")
    args = ap.parse_args(argv)
    seeds = args.seed or list(range(args.first_seed, args.first_seed + args.seeds))
    from tb.tools.runner import get_runner  # noqa: PLC0415

    get_runner()  # build once, before the workers start
    text, ok = run_seeds(seeds, args.episodes, args.jobs, args.fabric)
    print(text)
    print(f"report: {FUZZ_DIR / 'report.txt'}")
    return 0 if ok else 1
