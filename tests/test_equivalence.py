"""Equivalence of the fabrics: the same seed, the same scoreboard events on both.

The unit tests check the record and its comparison (tb/uvm/record.py) and how a regression
pairs the runs of one seed (tb/tools/regress.py); the simulation test runs the pyuvm smoke
test on both fabrics and compares what its scoreboard saw (``make regress FABRIC=both``
does the same for the random tests, seed by seed).
"""

from __future__ import annotations

import json

import pytest

import fabric
from tb.tools import regress
from tb.uvm.record import compare, load


def record(**streams):
    return {"meta": {}, "streams": streams, "final": {"switch": {"SW_TO_UPLINK": 3}}}


def test_equal_records_have_no_differences():
    a = record(**{"switch/1": [["aa", ["to_uplink"], [], [["aa", True]]]], "rx/2": ["bb", "cc"]})
    assert compare(a, json.loads(json.dumps(a))) == []


def test_ordered_streams_report_the_first_difference():
    a = record(**{"switch/1": [["aa", [], [], []], ["bb", [], [], []]]})
    b = record(**{"switch/1": [["bb", [], [], []], ["aa", [], [], []]]})
    (line,) = compare(a, b)
    assert line.startswith("switch/1: 2 vs 2 events, first difference at #0")


def test_unordered_streams_are_compared_as_multisets():
    a = record(**{"rx/2": ["bb", "cc", "cc"]})
    assert compare(a, record(**{"rx/2": ["cc", "bb", "cc"]})) == []
    (line,) = compare(a, record(**{"rx/2": ["cc", "bb"]}))
    assert "3 vs 2" in line and "'\"cc\"'" in line


def test_a_stream_missing_on_one_side_and_final_state_differences_are_reported():
    a = record(**{"faults": [[257, "READ_DENIED"]]})
    b = record()
    b["final"] = {"switch": {"SW_TO_UPLINK": 4}}
    lines = compare(a, b)
    assert any(line.startswith("faults: 1 vs 0") for line in lines)
    assert any(line.startswith("final switch") for line in lines)


def test_a_regression_pairs_the_records_of_one_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(regress, "RECORDS_DIR", tmp_path)
    base = record(**{"switch/0": [["aa", [], [], []]]})
    for name, rec in ((fabric.TLP, base), (fabric.FAST, base)):
        for test, seed in (("RandomTraffic", 3), ("RandomTraffic", 4)):
            path = tmp_path / name / f"{test}-{seed}99-{name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({**rec, "meta": {"test": test, "regression_seed": seed}}))
    assert regress.compare_fabrics(3) == ([], [])
    other = record(**{"switch/0": [["ab", [], [], []]]})
    (tmp_path / "fast" / "RandomTraffic-499-fast.json").write_text(
        json.dumps({**other, "meta": {"test": "RandomTraffic", "regression_seed": 4}})
    )
    (line,), races = regress.compare_fabrics(4)
    assert line.startswith("RandomTraffic: switch/0") and races == []
    # a test that races DMA on purpose: its differences are reported apart, not as failures
    (tmp_path / "fast" / "RandomTraffic-499-fast.json").write_text(
        json.dumps({**other, "meta": {"test": "RandomTraffic", "regression_seed": 4, "fabric_equivalent": False}})
    )
    assert regress.compare_fabrics(4)[0] == [] and len(regress.compare_fabrics(4)[1]) == 1
    assert load(tmp_path / "tlp" / "RandomTraffic-499-tlp.json")["meta"]["regression_seed"] == 4


def test_the_summary_gives_the_speed_up_and_the_verdict_per_seed():
    runs = [
        regress.SeedResult(1, fabric.TLP, 60.0, {"RandomTraffic": "pass"}),
        regress.SeedResult(1, fabric.FAST, 5.0, {"RandomTraffic": "pass"}),
        regress.SeedResult(2, fabric.FAST, 5.0, {"RandomTraffic": "pass"}),
    ]
    lines = regress.fabric_summary(runs)
    assert "1 seed(s): 1 with identical scoreboard events" in lines[1]
    assert "12.0x; same events" in lines[2]
    runs[0].differences = runs[1].differences = ["RandomTraffic: rx/2: ..."]
    assert "DIFFERENT" in regress.fabric_summary(runs)[2]
    assert not runs[0].ok and runs[2].ok


#: the fabric-equivalent pyuvm tests of ``make test``: one quiesced, one with its changes
#: (RSS, checksum, TSO, VLAN) made while traffic runs
SMOKE_EQUIVALENT = ("QuiescedSmoke", "OffloadSmoke")


@pytest.mark.sim
def test_the_smoke_tests_see_the_same_events_on_both_fabrics(tmp_path):
    """QuiescedSmoke (filters, moderation, traffic from every side, two disruptions on a quiet
    system) and OffloadSmoke (every offload configured and exercised while frames flow) on the
    TLP and on the transaction-level fabric: every scoreboard stream and the end state agree."""
    from cocotb_tools.check_results import get_results  # noqa: PLC0415

    from tb.tools.runner import run  # noqa: PLC0415

    for name in fabric.FABRICS:
        results = run(
            ["tb.tests.test_uvm"],
            testcase=",".join(SMOKE_EQUIVALENT),
            results_xml=tmp_path / f"{name}.xml",
            extra_env={"NIC_RECORD_DIR": str(tmp_path)},
            fabric=name,
        )
        assert get_results(results) == (len(SMOKE_EQUIVALENT), 0), f"a smoke test failed on the {name} fabric"
    for test in SMOKE_EQUIVALENT:
        tlp, fast = (load(next(tmp_path.glob(f"{test}-*-{name}.json"))) for name in fabric.FABRICS)
        assert tlp["meta"]["fabric_equivalent"] and fast["meta"]["fabric_equivalent"]
        assert any(key.startswith("switch/") and events for key, events in tlp["streams"].items()), "no frames moved"
        assert compare(tlp, fast) == [], f"{test} saw different events on the two fabrics"
