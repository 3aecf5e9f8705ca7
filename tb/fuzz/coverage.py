"""Coverpoints of the hostile-VF campaign (``nic.fuzz.*``): which scenario kinds ran, which
acts were made, and, per scenario kind, that its hostile acts were seen by the host (a
``silent`` outcome is never a bin: the campaign fails on it instead)."""

from __future__ import annotations

from cocotb_coverage.coverage import CoverCross, CoverPoint

from tb.fuzz.acts import SCENARIOS

ACT_KINDS = [
    "completer_abort",
    "unsupported_request",
    "error_flood",
    "unimpl",
    "ro_write",
    "register",
    "pf_register",
    "msix_table",
    "tx_ring",
    "read_only_ring",
    "bad_ring",
    "bad_tail",
    "rx_ring",
    "past_mapping",
    "malformed",
    "random",
    "no_lock",
    "stray_ack",
    "flood",
    "hold_vfu",
    "hold_vfu_after_req",
    "flr",
    "mid_request",
    "soft",
    "dma_without_bme",
    "foreign_vector",
    "source_mac",
    "config_writes",
    "sriov_reconfigure",
    "tx_offload",
    "offload_request",
    "stopped_doorbell",
    "tampered_blob",
    "crafted_blob",
]
#: scenario kinds that also make legal acts (the rest are hostile by construction)
LEGAL_TOO = (
    "mmio",
    "descriptors",
    "mailbox_garbage",
    "host_config",
    "numvfs_change",
    "offloads",
    "migration",
)  # "aer" is all hostile


@CoverPoint("nic.fuzz.scenario", xf=lambda e: e.scenario, bins=list(SCENARIOS))
def sample(episode):
    pass


def _outcome(act) -> str:
    if not act.hostile:
        return "legal"
    return "seen" if act.visible else "silent"


@CoverPoint("nic.fuzz.act", xf=lambda a: a.kind, bins=ACT_KINDS)
@CoverPoint("nic.fuzz.act_scenario", xf=lambda a: a.scenario, bins=list(SCENARIOS))
@CoverPoint("nic.fuzz.outcome", xf=_outcome, bins=["legal", "seen"])
@CoverCross(
    "nic.fuzz.scenario_x_outcome",
    items=["nic.fuzz.act_scenario", "nic.fuzz.outcome"],
    ign_bins=[(s, "legal") for s in SCENARIOS if s not in LEGAL_TOO]
    + [(s, "seen") for s in ("host_config", "numvfs_change")],
)
def sample_act(act):
    pass
