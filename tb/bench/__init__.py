"""``make bench``: run the benchmark cocotb modules under Verilator and print their tables.

Each benchmark is a cocotb module that measures wall-clock figures inside one
simulation and writes ``sim_build/bench_<name>.json`` as::

    {"title": str, "columns": [str, ...], "rows": [[cell, ...], ...],
     "summary": {label: value, ...}, ...anything else it wants to keep}

This entry point runs the modules (one simulator process each), then reads and
prints every JSON.  A new benchmark (e.g. the datapath) is one more entry in
:data:`BENCHES`.  Benchmarks are measurements, never pass/fail on time: the only
failures are functional ones inside a module.

    python -m tb.bench                 # all benchmarks
    python -m tb.bench iommu --ops 50  # one, shorter
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tb.paths import BUILD_DIR
from tb.tools.runner import run

#: benchmark name -> cocotb module; each writes sim_build/bench_<name>.json
BENCHES = {
    "iommu": "tb.bench.iommu",
    "datapath": "tb.bench.datapath",
}


PROFILE_AREAS = (
    "/iommu/",
    "/cocotbext/pcie/",
    "/cocotbext/",
    "/cocotb/",
    "/model/",
    "/netdev/",
    "/pf_driver/",
    "/vf_driver/",
    "/tb/",
)


def profile_areas(profile, out: Path, count: int = 25) -> dict:
    """Dump ``profile`` to ``out``; return own-time shares by area and the top functions."""
    import io  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    stats = pstats.Stats(profile, stream=io.StringIO())
    stats.dump_stats(out)
    total = sum(v[2] for v in stats.stats.values())
    areas: dict[str, float] = {}
    for (file, _line, _name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        area = next((a.strip("/") for a in PROFILE_AREAS if a in file), "other (stdlib, builtins)")
        areas[area] = areas.get(area, 0.0) + tt
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:count]
    return {
        "total_s": round(total, 3),
        "own_time_share": {a: round(t / total, 4) for a, t in sorted(areas.items(), key=lambda kv: -kv[1])},
        "top_tottime": [
            {
                "function": f"{Path(file).name}:{line}:{name}",
                "calls": nc,
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
            }
            for (file, line, name), (_cc, nc, tt, ct, _callers) in rows
        ],
    }


def result_path(name: str) -> Path:
    return BUILD_DIR / f"bench_{name}.json"


def format_table(result: dict) -> str:
    """The JSON's title, columns x rows (numbers right-aligned) and summary lines."""
    cells = [[str(c) for c in result["columns"]]]
    cells += [[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in result["rows"]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    out = [result["title"], line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells[1:]]
    out += [f"{label}: {value}" for label, value in result.get("summary", {}).items()]
    return "\n".join(out)


def run_bench(name: str, env: dict[str, str]) -> dict:
    """Run one benchmark module; return its JSON (raises if it failed or wrote none)."""
    from cocotb_tools.check_results import get_results  # noqa: PLC0415

    out = result_path(name)
    out.unlink(missing_ok=True)
    results = run([BENCHES[name]], results_xml=BUILD_DIR / f"bench_{name}.xml", extra_env=env)
    total, failed = get_results(results)
    if failed or not out.exists():
        raise RuntimeError(f"benchmark {name}: {failed}/{total} cocotb tests failed, see {results}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="name", help=f"benchmarks to run (default all: {', '.join(BENCHES)})")
    ap.add_argument("--ops", type=int, help="operations per measurement (BENCH_OPS)")
    ap.add_argument("--rounds", type=int, help="measurement rounds, median taken (BENCH_ROUNDS)")
    ap.add_argument("--profile", action="store_true", help="cProfile the measured runs (BENCH_PROFILE=1)")
    args = ap.parse_args(argv)
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(BENCHES)}")
    env = {
        key: str(value)
        for key, value in (
            ("BENCH_OPS", args.ops),
            ("BENCH_ROUNDS", args.rounds),
            ("BENCH_PROFILE", args.profile and 1),
        )
        if value
    }
    tables = []
    for name in args.names or BENCHES:
        t0 = time.perf_counter()
        result = run_bench(name, env)
        tables.append(f"{format_table(result)}\n(wall time {time.perf_counter() - t0:.1f} s; {result_path(name)})")
    print("\n\n" + "\n\n".join(tables))
    return 0
