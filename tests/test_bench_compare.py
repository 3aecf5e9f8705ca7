"""``make bench-compare`` (tb/bench/compare.py): a base revision's worktree, the benchmark files
each side wrote, and the medians and speed-ups of the report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tb.bench import compare


def datapath(us: dict[tuple[str, int], float]) -> dict:
    rows = [[frame, active, 0, 0, 0.0, cost] for (frame, active), cost in us.items()]
    return {"columns": ["frame", "active VFs", "full pkts/s", "bare pkts/s", "full/bare cost", "us/pkt"], "rows": rows}


def test_result_files_name_their_benchmark_and_fabric_and_old_ones_are_tlp():
    assert compare.result_key(Path("bench_datapath-fast.json")) == ("datapath", "fast")
    assert compare.result_key(Path("bench_regress-tlp.json")) == ("regress", "tlp")
    assert compare.result_key(Path("bench_datapath.json")) == ("datapath", "tlp")  # before the fast fabric


def test_figures_are_each_rows_cost_column_keyed_by_its_leading_cells():
    assert compare.figures("datapath", datapath({("64 B", 8): 75.2})) == {"64 B / 8": 75.2}
    platform = {"columns": ["", "wall s"], "rows": [["enable + probe 256 VFs", 0.9]]}
    assert compare.figures("platform", platform) == {"enable + probe 256 VFs": 0.9}
    assert compare.figures("regress", {"wall_s": 3.1, "rows": []}) == {"one seed, wall s": 3.1}
    assert compare.figures("iommu", {"columns": ["op"], "rows": [["write 64 B"]]}) == {}  # rates: not compared
    assert compare.figures("datapath", {"columns": ["frame"], "rows": [["64 B"]]}) == {}


def test_the_report_gives_medians_and_speed_ups_against_the_base_and_its_tlp_figures():
    base = {("datapath", "tlp"): datapath({("64 B", 1): 2000.0, ("1500 B", 1): 9000.0})}

    def this(tlp: float, fast: float) -> dict:
        return {("datapath", "tlp"): datapath({("64 B", 1): tlp}), ("datapath", "fast"): datapath({("64 B", 1): fast})}

    runs = [
        (compare.BASE, base),
        (compare.HEAD, this(1000, 50)),
        (compare.HEAD, this(1200, 40)),
        (compare.HEAD, this(800, 1e9)),
    ]
    data = compare.collect(runs)
    assert data["datapath"][compare.HEAD, "fast"]["64 B / 1"] == [50.0, 40.0, 1e9]
    text = compare.report(data, "abc123", 3)
    lines = text.split("\n")
    header, row = lines[lines.index("datapath") + 1], lines[lines.index("datapath") + 3]
    assert header.split() == "base tlp this tlp this fast tlp: base / this base tlp / fast this: tlp / fast".split()
    cells = row.split()
    # base 2000; this tlp median 1000; this fast median 50: tlp 2.00x, base tlp / fast 40.00x, tlp / fast 20.00x
    assert cells[-6:] == ["2,000", "1,000", "50", "2.00x", "40.00x", "20.00x"]
    assert "1500 B / 1" in text and "-" in text.split("1500 B / 1")[1].split("\n")[0]  # only the base has it


def test_a_base_worktree_is_made_once_at_the_commit_and_reused(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "first")
    first = git("rev-parse", "HEAD")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "second")
    root = tmp_path / "compare"
    tree = compare.base_worktree("HEAD~1", root, repo)
    assert tree == root / first[:12] and git("-C", str(tree), "rev-parse", "HEAD") == first
    (tree / "sim_build").mkdir()
    assert compare.base_worktree(first, root, repo) == tree and (tree / "sim_build").is_dir()
    with pytest.raises(subprocess.CalledProcessError):
        compare.base_worktree("no-such-revision", root, repo)


def test_only_the_files_a_run_wrote_are_its_results(tmp_path):
    """A side's results are the benchmark files its run wrote, not older ones in its build."""
    tree = tmp_path / "tree"
    (tree / "sim_build").mkdir(parents=True)
    (tree / "sim_build" / "bench_platform-tlp.json").write_text(json.dumps({"stale": True}))
    (tree / "tb" / "bench").mkdir(parents=True)
    (tree / "tb" / "__init__.py").write_text("")
    (tree / "tb" / "bench" / "__init__.py").write_text("")
    (tree / "tb" / "bench" / "__main__.py").write_text(
        "import json, os, pathlib, sys\n"
        "out = pathlib.Path(os.environ['NIC_BUILD_DIR'])\n"
        "for name in sys.argv[1:]:\n"
        "    (out / f'bench_{name}.json').write_text(json.dumps({'wall_s': 1.5}))\n"
    )
    os.utime(tree / "sim_build" / "bench_platform-tlp.json", (0, 0))
    assert compare.run_benchmarks(tree, ["regress"], {}) == {("regress", "tlp"): {"wall_s": 1.5}}
    (tree / "tb" / "bench" / "__main__.py").write_text("import sys\nprint('boom')\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match="exit 3"):
        compare.run_benchmarks(tree, ["regress"], {})
