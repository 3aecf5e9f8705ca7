"""What a regression seed no longer pays for, without a simulator: the pyuvm component
loggers of a finished test leave the logging manager, a register set's decode is built
once, a driver's aligned MMIO write is published as the lane-by-lane path would, the env
builds only the VF agents a test uses, a pyuvm test class registers without walking the
stack, and a seed's hostile-VF campaign runs in the process of its pyuvm tests with the
campaign's own reporting (episodes, the episode a simulation died in, coverage), the
collector does not walk what is alive when the simulation ends, and the host's per-device
state does not keep a finished test's platform alive."""

from __future__ import annotations

import gc
import json
import logging
import sys
import weakref
from types import SimpleNamespace

from cocotbext.pcie.core.pci import PciDevice

import pcicore
from datasheet import device, regs
from model import events as ev
from model.core.regfile import RegisterFile
from tb.fuzz import runner as fuzz
from tb.lib.system import GC_GEN0_THRESHOLD, freeze_at_exit, pace_garbage_collector
from tb.uvm.platform import MAX_AGENTS, EnvConfig
from tb.uvm.reporting import UVM_LOGGER, release_component_loggers
from tb.uvm.testcase import pyuvm_test
from tests.nic_fakes import CoreRig

LOG = logging.getLogger("test.regress_overhead")


# -- pyuvm component loggers ---------------------------------------------------------------------
def test_a_finished_tests_component_loggers_leave_the_manager_and_still_log(caplog):
    registry = logging.Logger.manager.loggerDict
    uvm = logging.getLogger(UVM_LOGGER)
    held = uvm.getChild("uvm_test_top.env.agent140001")  # as pyuvm names them: full name + id
    uvm.getChild("uvm_test_top.env.agent.driver140002")
    assert "uvm.uvm_test_top.env" in registry  # a placeholder of the dotted names
    assert release_component_loggers() >= 4
    assert not [name for name in registry if name.startswith(UVM_LOGGER + ".")]
    assert registry[UVM_LOGGER] is uvm
    with caplog.at_level(logging.INFO):
        held.warning("after the test")  # a component still holding its logger reaches uvm's handlers
    assert "after the test" in caplog.text
    assert held.parent is uvm


def test_release_leaves_other_loggers_alone():
    other = logging.getLogger("cocotb.nic.test_regress_overhead")
    release_component_loggers()
    assert logging.Logger.manager.loggerDict["cocotb.nic.test_regress_overhead"] is other


# -- register files --------------------------------------------------------------------------------
def test_register_files_of_one_set_decode_alike_and_keep_their_own_values():
    assert regs.registers_for(True) is regs.registers_for(True)
    a = RegisterFile(regs.registers_for(True), LOG)
    b = RegisterFile(regs.registers_for(True), LOG)
    scratch = next(r for r in regs.registers_for(True) if r.access is regs.Access.RW and r.write_mask)
    a.write(scratch.offset, (0xFFFFFFFF).to_bytes(4, "little"))
    assert a.get(scratch) == (scratch.reset & ~scratch.write_mask) | scratch.write_mask
    assert b.get(scratch) == scratch.reset  # the decode is shared, the values are not
    a.reset()
    assert a.get(scratch) == scratch.reset


def test_an_aligned_dword_access_does_what_the_same_dword_does_inside_a_longer_access():
    """Register files take an aligned 4-byte access (a driver's) at once: the values, the
    write-1-to-clear, the read-only and unimplemented errors and their counts are those of the
    same dwords inside 8-byte accesses (which go dword by dword)."""
    registers = regs.registers_for(True)
    w1c = next(r for r in registers if r.access is regs.Access.W1C and r.write_mask)
    decoded = {r.at(i) for r in registers for i in range(r.count)}
    unimplemented = next(o for o in range(0, 0x1000, 8) if o not in decoded and o + 4 not in decoded)
    pairs = [  # (offset, 8 bytes) starting at a dword
        (regs.SCRATCH.offset, (0x12345678).to_bytes(4, "little") + (0x0F0F0F0F).to_bytes(4, "little")),
        (w1c.offset, (0x0F0F0F0F).to_bytes(4, "little") * 2),
        (regs.NIC_ID.offset, (0xDEADBEEF).to_bytes(4, "little") * 2),
        (unimplemented, bytes(range(8))),
    ]
    dwords, longer = RegisterFile(registers, LOG), RegisterFile(registers, LOG)
    for rf in (dwords, longer):
        rf.set(w1c, 0xFFFFFFFF)
    for offset, data in pairs:
        dwords.write(offset, data[:4])
        dwords.write(offset + 4, data[4:])
        longer.write(offset, data)
        if offset == w1c.offset:  # written 1s cleared (the RO register after it flags its error again)
            assert dwords.get(w1c) == longer.get(w1c) != 0xFFFFFFFF
    for offset, _data in pairs:
        assert dwords.read(offset, 4) + dwords.read(offset + 4, 4) == longer.read(offset, 8)
    for reg in (regs.SCRATCH, w1c, regs.NIC_ID, regs.ERR_STATUS, regs.ERR_LAST_OFFSET, regs.ERR_UNIMPL_COUNT):
        assert dwords.get(reg) == longer.get(reg), reg.name
    assert dwords.get(regs.SCRATCH) == 0x12345678
    assert dwords.get(regs.ERR_UNIMPL_COUNT) == 2 + 2  # two unimplemented dwords written, two read


def test_a_long_aligned_read_reads_what_its_dwords_read_one_by_one():
    """A driver's read of many dwords at once (the per-VF bitmaps, a mailbox buffer) gives the
    bytes, the bound blocks' reads (in order) and the unimplemented-offset errors of the same
    dwords read one at a time: across register arrays, bound and plain registers and a hole."""
    registers = regs.registers_for(False)
    decoded = {r.at(i) for r in registers for i in range(r.count)}
    hole = next(o for o in range(regs.PF_VFRTRIG.end, 0x1000, 4) if o not in decoded)
    calls = {}
    files = {}
    for how in ("dwords", "at_once"):
        rf = files[how] = RegisterFile(registers, LOG)
        seen = calls[how] = []
        rf.bind(
            regs.PF_MBX_ACK, lambda i, seen=seen: seen.append(i) or (1 << 40 | 0x100 + i), None
        )  # masked to 32 bits
        for i in range(regs.PF_MBX_REQ.count):
            rf.set(regs.PF_MBX_REQ, 0x1000 * i + 7, i)
    start, end = regs.PF_MBX_REQ.offset + 4, hole + 4
    got = {
        "dwords": b"".join(files["dwords"].read(o, 4) for o in range(start, end, 4)),
        "at_once": files["at_once"].read(start, end - start),
    }
    assert got["dwords"] == got["at_once"]
    assert got["at_once"][:4] == (0x1007).to_bytes(4, "little")
    assert calls["dwords"] == calls["at_once"] == list(range(regs.PF_MBX_ACK.count))
    for reg in (regs.ERR_STATUS, regs.ERR_LAST_OFFSET, regs.ERR_UNIMPL_COUNT):
        assert files["dwords"].get(reg) == files["at_once"].get(reg) != 0, reg.name


def test_an_aligned_dword_write_is_published_as_the_same_dword_inside_a_longer_write():
    """The MMIO write events of aligned 4-byte writes (taken at once) are those of the same
    dwords inside one 8-byte write (cut lane by lane); a partial write keeps its byte enables."""
    events = {}
    for how in ("dwords", "longer"):
        rig = CoreRig(num_vfs=1)
        seen = events[how] = []
        rig.events.subscribe(ev.MmioWrite, seen.append)
        data = (0x12345678).to_bytes(4, "little") + (0x9ABCDEF0).to_bytes(4, "little")
        for fn in (rig.pf, rig.vfs[0]):
            if how == "dwords":
                fn.bar_write(device.REG_BAR, regs.SCRATCH.offset, data[:4])
                fn.bar_write(device.REG_BAR, regs.SCRATCH.offset + 4, data[4:])
            else:
                fn.bar_write(device.REG_BAR, regs.SCRATCH.offset, data)
            fn.bar_write(device.REG_BAR, regs.SCRATCH.offset + 1, b"\xaa\xbb")
    assert events["dwords"] == events["longer"]
    assert events["dwords"][0] == ev.MmioWrite(device.PF_PORT, device.REG_BAR, regs.SCRATCH.offset, 0x12345678, 0xF)
    assert events["dwords"][2] == ev.MmioWrite(device.PF_PORT, device.REG_BAR, regs.SCRATCH.offset, 0xBBAA00, 0x6)


def test_the_env_builds_a_vf_agent_for_each_vf_a_test_has_open_at_once():
    assert EnvConfig(seed=1, open_vfs=3).vf_agents == 3
    assert EnvConfig(seed=1, open_vfs=1, max_open_vfs=3).vf_agents == 3  # a re-enable opens up to 3
    assert EnvConfig(seed=1, open_vfs=4, max_open_vfs=2).vf_agents == 4
    assert EnvConfig(seed=1, open_vfs=MAX_AGENTS + 4).vf_agents == MAX_AGENTS


def test_a_pyuvm_test_class_becomes_a_cocotb_test_in_its_module():
    @pyuvm_test(timeout_time=2, timeout_unit="sec")
    class Probe:
        pass

    module = sys.modules[__name__]
    try:
        registered = getattr(module, "__Probe")  # the name pyuvm.test gives it
        assert type(registered).__name__ in ("Test", "TestGenerator")
        assert registered.name == "Probe"
    finally:
        delattr(module, "__Probe")


# -- the campaign in the seed's process ------------------------------------------------------------
def test_seed_environment_names_the_campaigns_files(tmp_path, monkeypatch):
    monkeypatch.setattr(fuzz, "FUZZ_DIR", tmp_path)
    fuzz.episodes_file(3).parent.mkdir(parents=True)
    fuzz.episodes_file(3).write_text("stale\n")
    env = fuzz.seed_environment(3, 8)
    assert env == {
        "NIC_FUZZ_SEED": "3",
        "NIC_FUZZ_EPISODES": "8",
        "NIC_FUZZ_RESULTS": str(tmp_path / "episodes" / "3.jsonl"),
    }
    assert not fuzz.episodes_file(3).exists()  # a new run starts from an empty file
    assert fuzz.seed_environment(3, 8, coverage_name="3")["NIC_FUZZ_COVERAGE"] == "3"


def episode(index: int, **bad) -> dict:
    record = {"seed": 3, "index": index, "scenario": "spoof", "acts": 1, "hostile": 1, "victim_frames": 5}
    record |= {"lost": 0, "silent": [], "escaped": [], "contained": [], "unexplained_losses": 0}
    record |= {"corrupted": 0, "isolation": [], "canary_changed": False, "over_time": False}
    return record | bad


def test_seed_result_names_the_episode_a_simulation_died_in(tmp_path, monkeypatch):
    monkeypatch.setattr(fuzz, "FUZZ_DIR", tmp_path)
    fuzz.seed_environment(3, 8)
    lines = [{"started": episode(0)}, {"episode": episode(0)}, {"started": episode(1)}]
    fuzz.episodes_file(3).write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = fuzz.seed_result(3, 1, 2.5, tmp_path / "3.log")
    assert [e["index"] for e in res["episodes"]] == [0]
    assert res["died_in"]["index"] == 1
    text, ok = fuzz.report([res], 8, 2.5, 1, coverage=[])
    assert not ok
    assert "seed 3: the simulation failed in episode 1 (spoof)" in text
    assert fuzz.repro_command(3, 8) in text


def test_a_clean_campaign_in_the_seeds_process_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(fuzz, "FUZZ_DIR", tmp_path)
    fuzz.seed_environment(3, 2)
    lines = [{"started": episode(0)}, {"episode": episode(0)}, {"started": episode(1)}, {"episode": episode(1)}]
    fuzz.episodes_file(3).write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = fuzz.seed_result(3, 0, 1.0, tmp_path / "3.log")
    assert res["died_in"] is None and len(res["episodes"]) == 2
    text, ok = fuzz.report([res], 2, 1.0, 1, coverage=[])
    assert ok and "PASS" in fuzz.status_line(res)
    bad = fuzz.seed_result(3, 1, 1.0, tmp_path / "3.log") | {"episodes": [episode(0, escaped=["ValueError"])]}
    text, ok = fuzz.report([bad], 2, 1.0, 1, coverage=[])
    assert not ok and "escaped: ['ValueError']" in text


# -- the end of a simulation -----------------------------------------------------------------------
def test_what_is_alive_at_exit_is_frozen_out_of_the_collectors_sight():
    try:
        freeze_at_exit()
        assert gc.get_freeze_count() > 0
        assert gc.collect() >= 0  # the collector still runs, over what is new
    finally:
        gc.unfreeze()


def test_the_first_pacing_freezes_what_the_process_imported_and_later_ones_nothing_more():
    saved = gc.get_threshold()
    try:
        pace_garbage_collector()  # the first test's build_system
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert gc.get_threshold()[0] >= GC_GEN0_THRESHOLD
        platform = [[n] for n in range(1000)]  # a test's platform, made after
        pace_garbage_collector()  # the next test's build_system
        assert gc.get_freeze_count() == frozen  # the platform stays the collector's
        assert gc.is_tracked(platform)
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


# -- the host's per-device state -------------------------------------------------------------------
def test_the_hosts_per_device_state_lives_and_dies_with_the_device():
    """pcicore's DMA API, bound driver and SR-IOV state of a function are kept on its host
    device (Linux's ``dev->dma_ops``, ``dev->driver``, ``dev->sriov``), so a finished test's
    platform is freed: in tables keyed by the device they kept every platform alive."""
    dev = PciDevice(None)
    driver, dma = SimpleNamespace(pdev=dev), SimpleNamespace(dev=dev)  # each holds its device, as the real ones do
    pcicore.set_dma_device(dev, dma)
    pcicore.pci_bind_driver(dev, driver)
    assert pcicore.dma_device(dev) is dma and pcicore.pci_bound_driver(dev) is driver
    pcicore.pci_unbind_driver(dev, object())  # another driver's unbind leaves it bound
    assert pcicore.pci_bound_driver(dev) is driver
    assert pcicore.pci_num_vf(dev) == 0  # SR-IOV not initialised
    alive = weakref.ref(dev)
    del dev, driver, dma
    gc.collect()
    assert alive() is None
    fresh = PciDevice(None)
    assert pcicore.dma_device(fresh) is None and pcicore.pci_bound_driver(fresh) is None
