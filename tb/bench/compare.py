"""``make bench-compare BASE=<rev>``: the benchmarks of another revision and of this checkout,
run in turn on this machine, and the speed-up of each figure.

``make bench`` gives ratios inside one run (one fabric against the other); a change is
measured against a revision instead.  On a shared machine one benchmark row moves by 10 to
40 % between runs, so the two sides run alternately, ``--rounds`` times each (base then this
checkout, then the other way round, ...), and each figure is the median of its runs.

The base revision gets a git worktree under ``sim_build/compare/<commit>`` (kept: its
Verilator build is reused next time) and runs its own ``python -m tb.bench`` there with this
environment's Python; whatever benchmark files it writes are read back, so a revision from
before the transaction-level fabric is compared by its TLP figures (its files carry no
fabric in their name).  Compared: the datapath (us per packet, per frame size and active VFs),
the platform timings (wall s) and one regression seed (wall s); lower is better, and a
speed-up is base / this checkout.  With both fabrics on this side, "base tlp / fast" is the
transaction-level fabric against the base's TLP one, and "this: tlp / fast" is ``make
bench``'s ratio of the two fabrics, each a median over the runs.

    python -m tb.bench.compare 856b14b                      # datapath, platform, regress
    python -m tb.bench.compare 4d7b3a8 datapath --rounds 5  # what a revision of old ran

Report: ``sim_build/compare/<commit>.txt`` (and every figure in ``<commit>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tb.bench import format_table
from tb.paths import BUILD_DIR, ROOT

COMPARE_DIR = BUILD_DIR / "compare"
BASE, HEAD = "base", "this"
TLP = "tlp"
#: what is compared per benchmark: the cost column of its rows and how many leading cells key a row
COST_COLUMNS = {"datapath": ("us/pkt", 2), "platform": ("wall s", 1)}
REGRESS = "regress"
DEFAULT_NAMES = ("datapath", "platform", REGRESS)


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def base_worktree(rev: str, root: Path = COMPARE_DIR, repo: Path = ROOT) -> Path:
    """A worktree of ``rev`` under ``root``, made on first use and kept (with its build)."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}", cwd=repo)
    tree = root / commit[:12]
    if not (tree / ".git").exists():
        root.mkdir(parents=True, exist_ok=True)
        git("worktree", "prune", cwd=repo)
        git("worktree", "add", "--detach", str(tree), commit, cwd=repo)
    return tree


def result_key(path: Path) -> tuple[str, str]:
    """(benchmark, fabric) of a ``bench_<name>[-<fabric>].json``: a file without a fabric is
    from before the transaction-level fabric, so TLP."""
    stem = path.stem.removeprefix("bench_")
    name, _, fabric_name = stem.partition("-")
    return name, fabric_name or TLP


def run_benchmarks(tree: Path, names: list[str], env: dict[str, str]) -> dict[tuple[str, str], dict]:
    """Run ``python -m tb.bench <names>`` in ``tree`` (its code, its build directory) with this
    Python; the results it wrote, by (benchmark, fabric)."""
    build = tree / "sim_build"
    started = time.time()
    run_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(tree),
        "NIC_BUILD_DIR": str(build),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tb.bench", *names], cwd=tree, env=run_env, capture_output=True, text=True
    )
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise RuntimeError(f"the benchmarks of {tree} failed (exit {proc.returncode}):\n{tail}")
    return {
        result_key(path): json.loads(path.read_text())
        for path in sorted(build.glob("bench_*.json"))
        if path.stat().st_mtime >= started
    }


def figures(name: str, result: dict) -> dict[str, float]:
    """The compared figures of one benchmark result, by row label."""
    if name == REGRESS:
        return {"one seed, wall s": result["wall_s"]} if "wall_s" in result else {}
    if name not in COST_COLUMNS:
        return {}
    column, keys = COST_COLUMNS[name]
    if column not in result.get("columns", []):
        return {}
    at = result["columns"].index(column)
    return {" / ".join(str(cell) for cell in row[:keys]): row[at] for row in result["rows"]}


def collect(runs: list[tuple[str, dict[tuple[str, str], dict]]]) -> dict[str, dict[tuple[str, str], dict[str, list]]]:
    """benchmark -> (side, fabric) -> row -> the figure of every run, from (side, results) pairs."""
    out: dict[str, dict[tuple[str, str], dict[str, list]]] = {}
    for side, results in runs:
        for (name, fabric_name), result in results.items():
            for row, value in figures(name, result).items():
                out.setdefault(name, {}).setdefault((side, fabric_name), {}).setdefault(row, []).append(value)
    return out


def speedups(series: dict[tuple[str, str], dict[str, list]]) -> list[tuple[str, tuple[str, str], tuple[str, str]]]:
    """(label, slower series, faster series) of each speed-up to show: every fabric of this
    checkout against its own base, a fabric other than TLP against the base's TLP figures, and
    on each side that has both, the TLP fabric against the other one (``make bench``'s ratio)."""
    pairs = []
    for side, fabric_name in sorted(series, key=lambda s: (s[1] != TLP, s[1])):
        if side != HEAD:
            continue
        if (BASE, fabric_name) in series:
            pairs.append((f"{fabric_name}: base / this", (BASE, fabric_name), (HEAD, fabric_name)))
        if fabric_name != TLP and (BASE, TLP) in series:
            pairs.append((f"base tlp / {fabric_name}", (BASE, TLP), (HEAD, fabric_name)))
    for side in (BASE, HEAD):
        for s, fabric_name in sorted(series):
            if s == side and fabric_name != TLP and (side, TLP) in series:
                pairs.append((f"{side}: tlp / {fabric_name}", (side, TLP), (side, fabric_name)))
    return pairs


def report(data: dict[str, dict[tuple[str, str], dict[str, list]]], base: str, rounds: int) -> str:
    """One table per benchmark: the median of each side and fabric, then the speed-ups."""
    out = [f"base {base} against this checkout, {rounds} run(s) each in turn; medians (lower is better)"]
    for name, series in data.items():
        order = sorted(series, key=lambda s: (s[0] != BASE, s[1] != TLP, s[1]))
        pairs = speedups(series)
        rows = list(dict.fromkeys(row for s in order for row in series[s]))
        columns = ["", *(f"{side} {fab}" for side, fab in order), *(label for label, _, _ in pairs)]
        table = []
        for row in rows:
            med = {s: statistics.median(series[s][row]) for s in order if row in series[s]}
            cells = [row, *(f"{med[s]:,.4g}" if s in med else "-" for s in order)]
            for _label, b, h in pairs:
                cells.append(f"{med[b] / med[h]:.2f}x" if b in med and h in med and med[h] else "-")
            table.append(cells)
        out += ["", format_table({"title": name, "columns": columns, "rows": table})]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="the revision to compare against (a commit, tag or branch)")
    ap.add_argument("names", nargs="*", help=f"benchmarks (default: {' '.join(DEFAULT_NAMES)})")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side, in turn (default 3)")
    ap.add_argument("--ops", type=int, help="operations per measurement (BENCH_OPS, both sides)")
    args = ap.parse_args(argv)
    names = args.names or list(DEFAULT_NAMES)
    env = {"BENCH_OPS": str(args.ops)} if args.ops else {}
    base_tree = base_worktree(args.base)
    runs = []
    for r in range(args.rounds):
        sides = [(BASE, base_tree), (HEAD, ROOT)]
        for side, tree in sides if r % 2 == 0 else sides[::-1]:
            print(f"run {r + 1}/{args.rounds}: {side} ({tree})", flush=True)
            runs.append((side, run_benchmarks(tree, names, env)))
    data = collect(runs)
    text = report(data, args.base, args.rounds)
    commit = base_tree.name
    (COMPARE_DIR / f"{commit}.txt").write_text(text + "\n")
    raw = {name: {f"{side} {fab}": rows for (side, fab), rows in series.items()} for name, series in data.items()}
    (COMPARE_DIR / f"{commit}.json").write_text(json.dumps({"base": args.base, "runs": raw}, indent=2))
    print("\n" + text + f"\n\n(report: {COMPARE_DIR / f'{commit}.txt'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
