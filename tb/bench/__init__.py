"""``make bench``: the benchmarks, on both fabrics side by side, with their tables.

Each benchmark is a cocotb module that measures wall-clock figures inside one simulation
and writes ``sim_build/bench_<name>-<fabric>.json`` as::

    {"title": str, "columns": [str, ...], "rows": [[cell, ...], ...],
     "summary": {label: value, ...}, ...anything else it wants to keep}

This entry point runs each module once per fabric (one simulator process each), plus one
regression seed per fabric (:mod:`tb.tools.regress`), and prints every table, then the
fabrics side by side: packets per second and the speed-up of the transaction-level fabric
over the TLP one, the platform figures (enable and probe 256 VFs, 100 ms of idle time), the
regression seed, and where the profiled time goes on each fabric, with the ceiling that puts
on the speed-up (Amdahl: the model, IOMMU and drivers cost what they cost on either fabric).
Benchmarks are measurements, never pass/fail on time: the only failures are functional ones
inside a module.

    python -m tb.bench                           # everything, both fabrics
    python -m tb.bench datapath --fabric fast    # one benchmark, one fabric
    python -m tb.bench iommu --ops 50            # shorter
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
import time
from pathlib import Path

import fabric
from tb.paths import BUILD_DIR
from tb.tools.runner import run

#: benchmark name -> (cocotb module, fabrics it measures); each writes bench_<name>-<fabric>.json
BENCHES = {
    "datapath": ("tb.bench.datapath", fabric.FABRICS),
    "platform": ("tb.bench.platform", fabric.FABRICS),
    # the IOMMU's cost against the root complex's own TLP handler: a TLP-fabric figure
    "iommu": ("tb.bench.iommu", (fabric.TLP,)),
}
#: not a cocotb module: one seed of ``make regress`` per fabric
REGRESS = "regress"
BOTH = "both"

#: where profiled time is booked: the first of these path pieces in a function's file
PROFILE_AREAS = (
    "/iommu/",
    "/fabric/",
    "/cocotbext/pcie/",
    "/cocotbext/",
    "/cocotb/",
    "/model/",
    "/netdev/",
    "/pf_driver/",
    "/vf_driver/",
    "/pcicore/",
    "/observe/",
    "/datasheet/",
    "/tb/",
)
OTHER = "other (stdlib, builtins)"
#: the areas the issue's target counts together: what the simulation is for
PAYLOAD_AREAS = ("model", "iommu", "netdev", "pf_driver", "vf_driver", "pcicore", "datasheet", "observe")


def area_of(file: str) -> str:
    return next((a.strip("/") for a in PROFILE_AREAS if a in file), OTHER)


def profile_areas(profile, out: Path, count: int = 25) -> dict:
    """Dump ``profile`` to ``out``; return the time by area and the top functions.

    ``own_time_share``: each function's own time booked to its area, builtins and the
    standard library apart.  ``charged_share``: the same, with the time of each builtin or
    standard-library call charged to the area of the function that made it (pstats keeps
    the time per caller), which says who the time is spent for.  ``payload_share`` is the
    charged share of the model, IOMMU, drivers and the datasheet rules they run."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    stats.dump_stats(out)
    total = sum(v[2] for v in stats.stats.values()) or 1e-9
    own: dict[str, float] = {}
    charged: dict[str, float] = {}
    for (file, _line, _name), (_cc, _nc, tt, _ct, callers) in stats.stats.items():
        area = area_of(file)
        own[area] = own.get(area, 0.0) + tt
        if area != OTHER:
            charged[area] = charged.get(area, 0.0) + tt
            continue
        for (caller_file, _l, _n), edge in callers.items():
            booked = area_of(caller_file)
            charged[booked] = charged.get(booked, 0.0) + edge[2]

    def shares(times: dict[str, float]) -> dict[str, float]:
        return {a: round(t / total, 4) for a, t in sorted(times.items(), key=lambda kv: -kv[1])}

    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:count]
    return {
        "total_s": round(total, 3),
        "own_time_share": shares(own),
        "charged_share": shares(charged),
        "payload_share": round(sum(charged.get(a, 0.0) for a in PAYLOAD_AREAS) / total, 4),
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


def result_path(name: str, fabric_name: str | None = None) -> Path:
    """``sim_build/bench_<name>-<fabric>.json`` (the fabric of this run by default)."""
    return BUILD_DIR / f"bench_{name}-{fabric_name or fabric.resolve()}.json"


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


def run_bench(name: str, fabric_name: str, env: dict[str, str]) -> dict:
    """Run one benchmark module on one fabric; return its JSON (raises if it failed or wrote none)."""
    from cocotb_tools.check_results import get_results  # noqa: PLC0415

    out = result_path(name, fabric_name)
    out.unlink(missing_ok=True)
    module, _fabrics = BENCHES[name]
    xml = BUILD_DIR / f"bench_{name}-{fabric_name}.xml"
    results = run([module], results_xml=xml, extra_env=env, fabric=fabric_name)
    total, failed = get_results(results)
    if failed or not out.exists():
        raise RuntimeError(f"benchmark {name} ({fabric_name}): {failed}/{total} cocotb tests failed, see {results}")
    return json.loads(out.read_text())


def run_regress_seed(fabric_name: str, seed: int) -> dict:
    """Wall time of one ``make regress`` seed on a fabric: every pyuvm test at regression
    level, then the hostile-VF campaign's episodes for that seed, in one simulator process
    as the regression runs them."""
    from tb.fuzz.runner import DEFAULT_EPISODES, TEST  # noqa: PLC0415
    from tb.tools.regress import run_seed  # noqa: PLC0415

    res = run_seed(
        seed,
        fabric_name=fabric_name,
        coverage=False,
        base=BUILD_DIR / "bench_regress",
        campaign_episodes=DEFAULT_EPISODES,
    )
    fuzz = res.campaign
    if not res.ok or fuzz is None or fuzz["exit"] or fuzz["died_in"]:
        raise RuntimeError(f"regression seed {seed} on {fabric_name}: {res.failed or res.error}")
    pyuvm = {test: status for test, status in res.tests.items() if test != TEST}
    result = {
        "title": f"One regression seed ({seed}) on the {fabric_name} fabric",
        "columns": ["part", "wall s"],
        "rows": [
            [
                f"simulator process: pyuvm tests ({', '.join(f'{t}:{s}' for t, s in pyuvm.items())}) "
                f"and the hostile-VF campaign",
                round(res.wall_s, 1),
            ],
            [f"of which the campaign, {len(fuzz['episodes'])} episodes", round(fuzz["wall_s"], 1)],
        ],
        "summary": {"wall time (s)": round(res.wall_s, 1)},
        "wall_s": res.wall_s,
    }
    result_path(REGRESS, fabric_name).write_text(json.dumps(result, indent=2))
    return result


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.1f}x" if fast else "n/a"


def side_by_side(results: dict[tuple[str, str], dict]) -> str:
    """The two fabrics' figures next to each other, with the speed-up of the fast one."""
    tlp, fast = fabric.TLP, fabric.FAST
    out = []
    if ("datapath", tlp) in results and ("datapath", fast) in results:
        a, b = results["datapath", tlp], results["datapath", fast]
        rows = []
        for ra, rb in zip(a["rows"], b["rows"]):
            rows.append([ra[0], ra[1], ra[2], rb[2], ratio(rb[2], ra[2]), ra[5], rb[5]])
        out.append(
            format_table(
                {
                    "title": "VF-to-VF datapath, both fabrics in the same run (full path: drivers, model, IOMMU)",
                    "columns": [
                        "frame",
                        "active VFs",
                        "tlp pkts/s",
                        "fast pkts/s",
                        "speed-up",
                        "tlp us/pkt",
                        "fast us/pkt",
                    ],
                    "rows": rows,
                }
            )
        )
    if ("platform", tlp) in results and ("platform", fast) in results:
        a, b = results["platform", tlp], results["platform", fast]
        rows = [[ra[0], ra[1], rb[1], ratio(ra[1], rb[1])] for ra, rb in zip(a["rows"], b["rows"])]
        out.append(
            format_table(
                {"title": "Platform wall time (s), same run", "columns": ["", "tlp", "fast", "speed-up"], "rows": rows}
            )
        )
    if (REGRESS, tlp) in results and (REGRESS, fast) in results:
        a, b = results[REGRESS, tlp]["wall_s"], results[REGRESS, fast]["wall_s"]
        out.append(
            format_table(
                {
                    "title": "One make regress seed (every pyuvm test at regression level, then its campaign)",
                    "columns": ["", "tlp", "fast", "speed-up"],
                    "rows": [["wall time (s)", round(a, 1), round(b, 1), ratio(a, b)]],
                }
            )
        )
    profiles = {f: results[("datapath", f)].get("profile") for f in fabric.FABRICS if ("datapath", f) in results}
    if all(profiles.values()) and profiles:
        areas = sorted({a for p in profiles.values() for a in p["charged_share"]})

        def share(p, area):
            return f"{p['own_time_share'].get(area, 0):.1%} / {p['charged_share'].get(area, 0):.1%}"

        rows = [[area, *(share(p, area) for p in profiles.values())] for area in areas]
        rows.append(["model + IOMMU + drivers (charged)"] + [f"{p['payload_share']:.1%}" for p in profiles.values()])
        table = {
            "title": "Where the time goes (8 VFs, 64 B, cProfile): own time / builtins charged to the caller",
            "columns": ["area", *profiles],
            "rows": rows,
        }
        ceiling = None
        if ("datapath", tlp) in results and ("datapath", fast) in results:
            ceiling = speedup_ceiling(results["datapath", tlp], results["datapath", fast])
        if ceiling is not None:
            table["summary"] = {
                "speed-up ceiling (tlp us/pkt over the fast fabric's model + IOMMU + drivers us/pkt)": f"{ceiling:.1f}x"
            }
        out.append(format_table(table))
    return "\n\n".join(out)


def speedup_ceiling(tlp_result: dict, fast_result: dict) -> float | None:
    """Amdahl's bound on the transaction-level fabric's speed-up for the profiled datapath row:
    however little the fabric costs, a packet still costs the model, IOMMU and drivers their
    share of the fast fabric's time per packet. None without a profile of that row."""
    prof = fast_result.get("profile") or {}
    row = prof.get("row")
    if row is None:
        return None
    tlp_us, fast_us = (next((r[5] for r in res["rows"] if r[:2] == row), None) for res in (tlp_result, fast_result))
    if not (tlp_us and fast_us and prof.get("payload_share")):
        return None
    return tlp_us / (fast_us * prof["payload_share"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [*BENCHES, REGRESS]
    ap.add_argument("names", nargs="*", metavar="name", help=f"benchmarks to run (default all: {', '.join(names)})")
    ap.add_argument("--fabric", default=BOTH, choices=[*fabric.FABRICS, BOTH], help="fabric(s) to measure")
    ap.add_argument("--ops", type=int, help="operations per measurement (BENCH_OPS)")
    ap.add_argument("--rounds", type=int, help="measurement rounds, median taken (BENCH_ROUNDS)")
    ap.add_argument("--seed", type=int, default=1, help="the regression seed timed (default 1)")
    ap.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile one more datapath run (BENCH_PROFILE)",
    )
    args = ap.parse_args(argv)
    unknown = set(args.names) - set(names)
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    env = {
        key: str(value)
        for key, value in (("BENCH_OPS", args.ops), ("BENCH_ROUNDS", args.rounds), ("BENCH_PROFILE", int(args.profile)))
        if value is not None
    }
    fabrics = fabric.FABRICS if args.fabric == BOTH else (args.fabric,)
    tables, results = [], {}
    for name in args.names or names:
        for fabric_name in fabrics:
            if name != REGRESS and fabric_name not in BENCHES[name][1]:
                continue
            t0 = time.perf_counter()
            if name == REGRESS:
                result = run_regress_seed(fabric_name, args.seed)
            else:
                result = run_bench(name, fabric_name, env)
            results[name, fabric_name] = result
            tables.append(
                f"[{fabric_name}] {format_table(result)}\n(wall time {time.perf_counter() - t0:.1f} s; "
                f"{result_path(name, fabric_name)})"
            )
    print("\n\n" + "\n\n".join(tables))
    both = side_by_side(results)
    if both:
        print("\n\n" + both)
        (BUILD_DIR / "bench_fabrics.txt").write_text(both + "\n")
    return 0
