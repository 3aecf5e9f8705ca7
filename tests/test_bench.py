"""``make bench``'s side-by-side report (tb/bench), from results shaped as the benchmarks write them."""

from __future__ import annotations

import pytest

import fabric
from tb.bench import side_by_side, speedup_ceiling


def datapath(us_per_packet: dict, profile: dict | None = None) -> dict:
    """A datapath result: (frame, active VFs) -> us per packet, the columns the module writes."""
    rows = [[frame, active, round(1e6 / us), 0, 0.0, us] for (frame, active), us in us_per_packet.items()]
    result = {"title": "datapath", "columns": ["frame", "active VFs", "full", "bare", "cost", "us/pkt"], "rows": rows}
    if profile is not None:
        result["profile"] = profile
    return result


def profile(payload_share: float) -> dict:
    return {
        "own_time_share": {"model": payload_share},
        "charged_share": {"model": payload_share},
        "payload_share": payload_share,
        "row": ["64 B", 8],
    }


def test_the_ceiling_is_tlp_time_over_the_fast_fabrics_model_time_for_the_profiled_row():
    tlp = datapath({("64 B", 1): 2000.0, ("64 B", 8): 1000.0}, profile(0.2))
    fast = datapath({("64 B", 1): 400.0, ("64 B", 8): 200.0}, profile(0.5))
    assert speedup_ceiling(tlp, fast) == pytest.approx(10.0)  # 1000 / (200 x 0.5)
    report = side_by_side({("datapath", fabric.TLP): tlp, ("datapath", fabric.FAST): fast})
    assert "5.0x" in report and "10.0x" in report  # the speed-up of the row and its ceiling


def test_no_ceiling_without_a_profile_of_a_row_both_fabrics_measured():
    tlp = datapath({("64 B", 8): 1000.0})
    assert speedup_ceiling(tlp, datapath({("64 B", 8): 200.0})) is None
    assert speedup_ceiling(tlp, datapath({("64 B", 1): 200.0}, profile(0.5))) is None


def test_one_fabric_gets_its_profile_table_without_a_ceiling():
    """``python -m tb.bench datapath --fabric fast``: the profile of the one fabric measured."""
    report = side_by_side({("datapath", fabric.FAST): datapath({("64 B", 8): 200.0}, profile(0.5))})
    assert "Where the time goes" in report and "ceiling" not in report


def test_a_row_of_many_vfs_measures_a_stream_on_each_not_its_first_burst():
    """Each active VF sends ``STEADY_PER_SENDER`` frames a measurement at least: 240 frames over
    64 VFs (3 each) timed each VF's first burst after idle, not the stream the row stands for."""
    from tb.bench.datapath import STEADY_PER_SENDER, row_packets  # noqa: PLC0415  (imports cocotb)

    assert row_packets(240, 1) == row_packets(240, 8) == 240
    assert row_packets(240, 64) == 64 * STEADY_PER_SENDER >= 64 * 16
    assert row_packets(4000, 64) == 4000
