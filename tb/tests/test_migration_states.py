"""VF migration on one NIC: the VFIO v2 state machine the PF driver implements, the device's
own arcs and commands (``PF_MIG_*``), quiescing, and save/load with every kind of bad blob.

The migration between two NICs with traffic running is ``tb.tests.test_migration``.
"""

from __future__ import annotations

import json
import struct
import zlib

import cocotb
from cocotb.triggers import Timer

from datasheet import device, regs
from datasheet import migration as mig
from datasheet.migration import Blob, MigError, MigOp, MigState, Section, SectionType
from model import events as ev
from pf_driver.migration import DEVICE_STATE, VFIO_ARCS, MigrationError, VfioMigState, mig_path
from pf_driver.vf_info import LinkState, MddPolicy, VfState
from tb.lib.system import build_system
from tb.lib.timing import expect_within
from tb.tests.test_datapath import frame, recv, stat

S = VfioMigState
CMD = {f.name: f for f in regs.PF_MIG_CMD.fields}
STATUS = {f.name: f for f in regs.PF_MIG_STATUS.fields}


async def up(dut, num_vfs=2, ring_size=64):
    sys_ = await build_system(dut, total_vfs=4, iommu=True)
    vfs = await sys_.enable_vfs(num_vfs)
    for vf in vfs:
        sys_.attach_vf_domain(vf)
        await vf.open(ring_size, num_queues=1)
    return sys_, vfs


async def raw_command(pf, vf: int, op: int, target: int = 0) -> tuple[int, int]:
    """Write PF_MIG_CMD directly; (ERR, DONE) once BUSY clears."""
    await pf.write_reg(regs.PF_MIG_CMD, CMD["TARGET"].put(CMD["OP"].put(CMD["VF"].put(0, vf), op), target))
    for _ in range(1000):
        status = await pf.read_reg(regs.PF_MIG_STATUS)
        if not STATUS["BUSY"].get(status):
            return STATUS["ERR"].get(status), STATUS["DONE"].get(status)
        await Timer(200, "ns")
    raise AssertionError("migration command still busy")


async def device_state(pf, vf: int) -> MigState:
    return MigState(await pf.read_reg(regs.PF_MIG_STATE, vf))


@cocotb.test()
async def every_illegal_vfio_arc_is_refused_and_changes_nothing(dut):
    """From each of the seven states, every state that is not one arc away is refused with
    MigrationError; the driver's and the device's states stay put. Every legal arc works and
    moves the device to the state DEVICE_STATE names."""
    sys_, vfs = await up(dut, num_vfs=1)
    mig_vf = sys_.pf.vf_migration(0)
    await mig_vf.set_state_path(S.STOP_COPY)
    own = mig_vf.save_data()  # leaving RESUMING loads a blob: the VF's own state

    async def goto(state: VfioMigState) -> None:
        if mig_vf.state is S.RESUMING:
            mig_vf.load_data(own)
        await mig_vf.set_state_path(state)
        assert mig_vf.state is state

    states = [S.RUNNING, S.RUNNING_P2P, S.STOP, S.STOP_COPY, S.PRE_COPY, S.PRE_COPY_P2P, S.RESUMING]
    refused = 0
    for state in states:
        await goto(state)
        before = await device_state(sys_.pf, 0)
        assert before is DEVICE_STATE[state]
        for target in S:
            if target in VFIO_ARCS[state]:
                continue
            try:
                await mig_vf.set_state(target)
            except MigrationError as exc:
                assert "is not a VFIO migration arc" in str(exc)
                refused += 1
            else:
                raise AssertionError(f"{state.name} -> {target.name} was accepted")
            assert mig_vf.state is state
            assert await device_state(sys_.pf, 0) is before
    assert refused == sum(len(S) - len(VFIO_ARCS[s]) for s in states) == 41
    for state in states:
        for target in sorted(VFIO_ARCS[state]):
            await goto(state)
            if state is S.RESUMING:
                mig_vf.load_data(own)
            await mig_vf.set_state(target)
            assert mig_vf.state is target
            assert await device_state(sys_.pf, 0) is DEVICE_STATE[target], (state.name, target.name)
    assert mig_path(S.RUNNING, S.STOP_COPY) == [S.RUNNING_P2P, S.STOP, S.STOP_COPY]
    await goto(S.RUNNING)
    assert await device_state(sys_.pf, 0) is MigState.RUNNING


@cocotb.test()
async def the_device_refuses_bad_commands_and_changes_nothing(dut):
    """Straight to PF_MIG_CMD: an arc the device does not have, SAVE outside STOP, LOAD outside
    RESUMING, a VF beyond NumVFs, an unknown operation or state: each ERR code, state unchanged."""
    sys_, _vfs = await up(dut, num_vfs=1)
    pf = sys_.pf
    cases = [
        (0, MigOp.SET_STATE, MigState.STOP, MigError.BAD_ARC),
        (0, MigOp.SET_STATE, MigState.RESUMING, MigError.BAD_ARC),
        (0, MigOp.SAVE, 0, MigError.BAD_STATE),
        (0, MigOp.LOAD, 0, MigError.BAD_STATE),
        (1, MigOp.SET_STATE, MigState.RUNNING_P2P, MigError.BAD_VF),
        (0, 0xF, 0, MigError.BAD_OP),
        (0, MigOp.SET_STATE, 0xE, MigError.BAD_OP),
    ]
    for vf, op, target, error in cases:
        assert await raw_command(pf, vf, int(op), int(target)) == (error, 0), (op, target)
        assert await device_state(pf, 0) is MigState.RUNNING
    assert await raw_command(pf, 0, MigOp.SET_STATE, MigState.RUNNING_P2P) == (MigError.NONE, 1)
    assert await raw_command(pf, 0, MigOp.SET_STATE, MigState.RESUMING) == (MigError.BAD_ARC, 0)
    assert await device_state(pf, 0) is MigState.RUNNING_P2P
    assert await raw_command(pf, 0, MigOp.SET_STATE, MigState.RUNNING) == (MigError.NONE, 1)


@cocotb.test()
async def stop_quiesces_tx_and_counts_rx_as_dropped(dut):
    """In STOP the VF sends nothing it is given, every frame for it is counted dropped and its
    interrupts are held (a PF mailbox message among them); back to RUNNING, what was posted
    meanwhile goes out, once, and the held interrupt is delivered."""
    sys_, vfs = await up(dut, num_vfs=1)
    vf, uplink = vfs[0], sys_.nic.uplink
    interrupts = []
    sys_.nic.events.subscribe(ev.Interrupt, lambda e: interrupts.append(e) if e.fn == device.vf_port(0) else None)
    mig_vf = sys_.pf.vf_migration(0)
    await mig_vf.set_state_path(S.STOP)
    sys_.pf.set_vf_link_state(0, LinkState.DISABLE)  # the PF's mailbox notifies the VF
    await expect_within(lambda: any(e.why == "migration stop" for e in interrupts), 2_000_000, 1_000)
    assert not any(e.outcome == "sent" for e in interrupts)
    assert vf.link_events == []
    drops = await stat(vf, "RX_DROPS")
    for n in range(3):
        await uplink.send(frame(b"\x02\x00\x00\x00\x00\x99", vf.mac, n))
    assert await stat(vf, "RX_DROPS") == drops + 3
    assert await recv(vf.netdev, timeout_us=20) is None
    out = frame(vf.mac, b"\x02\x00\x00\x00\x00\x99", 7)
    assert await vf.start_xmit(out)
    assert await uplink.recv(timeout_ns=50_000) is None
    assert await stat(vf, "TX_PACKETS") == 0
    await mig_vf.set_state_path(S.RUNNING)
    assert await uplink.recv(timeout_ns=200_000) == out
    await expect_within(lambda: vf.link_events == [(False, device.UPLINK_SPEED_MBPS)], 2_000_000, 1_000)
    assert await uplink.recv(timeout_ns=50_000) is None
    await uplink.send(frame(b"\x02\x00\x00\x00\x00\x99", vf.mac, 9))
    assert await recv(vf.netdev) is not None


async def vf_view(sys_, vf_drv, index: int) -> list[int]:
    """What loading may change of VF ``index``: its ring registers and counters, its switch
    port and offload registers in the PF, its migration state."""
    words = [await vf_drv.read_reg(reg, 0) for reg in (regs.TDBAL, regs.TDLEN, regs.TDH, regs.TDT, regs.RDH)]
    words += [await vf_drv.read_reg(reg) for reg in regs.STATS]
    fn = device.vf_port(index)
    for reg, n in mig.SWITCH_REGS + mig.OFFLOAD_REGS:
        words += await sys_.pf.read_regs(reg, n, fn * n)
    return [*words, await sys_.pf.read_reg(regs.PF_MIG_STATE, index)]


async def saved_blob(sys_, vfs) -> tuple[bytes, list[int]]:
    """VF 0's state after some traffic, through STOP_COPY, and its view (see vf_view) then."""
    for n in range(3):
        assert await vfs[0].start_xmit(frame(vfs[0].mac, b"\x02\x00\x00\x00\x00\x99", n))
    await expect_within(lambda: sys_.nic.uplink.pending >= 3, 1_000_000, 1_000)
    mig_vf = sys_.pf.vf_migration(0)
    await mig_vf.set_state_path(S.STOP_COPY)
    blob = mig_vf.save_data()
    view = await vf_view(sys_, vfs[0], 0)
    # the source lets the VF go (its MAC with it): its guest unbound, the VF reset
    await vfs[0].remove()
    await sys_.pf.trigger_vf_reset(0)
    await expect_within(lambda: sys_.pf.vf_info(0).state is VfState.NOT_RESET, 2_000_000, 1_000)
    return blob, view


def reseal(raw: bytes) -> bytes:
    """A tampered blob with a valid CRC (what an attacker who knows the format sends)."""
    out = bytearray(raw)
    struct.pack_into("<I", out, mig.CRC_OFFSET, 0)
    struct.pack_into("<I", out, mig.CRC_OFFSET, zlib.crc32(out))
    return bytes(out)


@cocotb.test()
async def save_and_load_carry_the_vf_state(dut):
    """VF 0's blob loaded into VF 1: rings at the same IOVAs and heads, the same counters, VF 0's
    MAC on VF 1's switch port; the blob is versioned, self-describing and sealed by its CRC."""
    sys_, vfs = await up(dut)
    raw, source = await saved_blob(sys_, vfs)
    blob = Blob.parse(raw)
    assert blob.version == mig.FORMAT_VERSION and blob.vf_index == 0
    assert [s.type for s in blob.sections] == [*map(int, mig.DEVICE_SECTIONS), SectionType.PF_POLICY]
    assert blob.compat == mig.Compat(total_vfs=4)
    dest = sys_.pf.vf_migration(1)
    await dest.set_state_path(S.RESUMING)
    dest.load_data(raw)
    await dest.set_state(S.STOP)
    loaded = await vf_view(sys_, vfs[1], 1)
    assert loaded[:-1] == source[:-1]  # all but the migration state
    assert loaded[5 : 5 + len(regs.STATS)][0] == 3  # STAT_TX_PACKETS continues
    assert regs.sw_mac_decode(loaded[-46], loaded[-45]) == vfs[0].mac  # SW_MAC_LO/HI of VF 1
    assert sys_.pf.vf_info(1).mac == vfs[0].mac


BAD_BLOBS = {
    "wrong_version": (lambda raw: reseal(raw[:4] + struct.pack("<H", 2) + raw[6:]), MigError.BAD_VERSION),
    "newer_minor": (lambda raw: reseal(raw[:6] + struct.pack("<H", 9) + raw[8:]), MigError.BAD_VERSION),
    "flipped_byte": (lambda raw: raw[:200] + bytes([raw[200] ^ 1]) + raw[201:], MigError.BAD_CRC),
    "truncated": (lambda raw: raw[:-8], MigError.BAD_MAGIC),
    "not_a_blob": (lambda raw: b"ELF\x7f" + raw[4:], MigError.BAD_MAGIC),
    "other_total_vfs": (lambda raw: reseal(raw[:24] + struct.pack("<H", 8) + raw[26:]), MigError.INCOMPATIBLE),
    "other_queue_count": (lambda raw: reseal(raw[:20] + struct.pack("<H", 8) + raw[22:]), MigError.INCOMPATIBLE),
}


def drop_section(kind: SectionType):
    def tamper(raw: bytes) -> bytes:
        blob = Blob.parse(raw)
        return Blob(blob.compat, blob.vf_index, [s for s in blob.sections if s.type != kind]).pack()

    return tamper


def short_section(raw: bytes) -> bytes:
    blob = Blob.parse(raw)
    sections = [
        Section(s.type, s.payload[:-4] if s.type == SectionType.QUEUES else s.payload, s.flags) for s in blob.sections
    ]
    return Blob(blob.compat, blob.vf_index, sections).pack()


def policy_mac(mac: bytes):
    def tamper(raw: bytes) -> bytes:
        blob = Blob.parse(raw)
        sections = []
        for s in blob.sections:
            if s.type == SectionType.PF_POLICY:
                policy = json.loads(s.payload)
                policy["mac"] = mac.hex()
                s = Section(s.type, json.dumps(policy).encode(), s.flags)
            sections.append(s)
        return Blob(blob.compat, blob.vf_index, sections).pack()

    return tamper


BAD_BLOBS["missing_msix"] = (drop_section(SectionType.MSIX), MigError.MALFORMED)
BAD_BLOBS["short_queues"] = (short_section, MigError.MALFORMED)
BAD_BLOBS["no_pf_policy"] = (drop_section(SectionType.PF_POLICY), MigError.MALFORMED)
BAD_BLOBS["the_pfs_mac"] = (policy_mac(device.permanent_mac(0x0100)), MigError.POLICY)  # the PF at 01:00.0
BAD_BLOBS["multicast_mac"] = (policy_mac(bytes.fromhex("01005e000001")), MigError.POLICY)
BAD_BLOBS["mac_not_the_filters"] = (policy_mac(bytes.fromhex("02aa00000002")), MigError.POLICY)


@cocotb.test()
async def every_bad_blob_is_refused_and_the_destination_is_untouched(dut):
    """Each tampered blob: RESUMING -> STOP fails with the device's (or the driver's) reason,
    the destination stays in RESUMING with every register as it was; the good blob then loads."""
    sys_, vfs = await up(dut)
    raw, _view = await saved_blob(sys_, vfs)
    dest = sys_.pf.vf_migration(1)
    await dest.set_state_path(S.RESUMING)
    before = await vf_view(sys_, vfs[1], 1)
    policy_before = sys_.pf.vf_info(1).mac
    for name, (tamper, error) in BAD_BLOBS.items():
        dest.load_data(tamper(raw))
        try:
            await dest.set_state(S.STOP)
        except MigrationError as exc:
            assert exc.error is error, (name, exc)
            assert error.name in str(exc), (name, exc)
        else:
            raise AssertionError(f"{name}: loaded")
        assert dest.state is S.RESUMING, name
        assert await vf_view(sys_, vfs[1], 1) == before, name
        assert sys_.pf.vf_info(1).mac == policy_before, name
    dest.load_data(raw)
    await dest.set_state(S.STOP)
    assert sys_.pf.vf_info(1).mac == vfs[0].mac


@cocotb.test()
async def a_vf_in_the_error_state_is_not_migrated(dut):
    """A VF the PF disabled after an error event (FN_ERR set): PRE_COPY is refused by the driver,
    RUNNING_P2P by the device (VF_ERROR); it stays RUNNING."""
    sys_, vfs = await up(dut, num_vfs=1)
    sys_.pf.set_mdd_policy(MddPolicy(disable_after=1))
    injection = sys_.nic.inject.engine_fault(device.vf_port(0))
    await vfs[0].start_xmit(frame(vfs[0].mac, b"\x02\x00\x00\x00\x00\x99", 1))
    await expect_within(lambda: injection.fired and sys_.pf.vf_info(0).errors == 1, 2_000_000, 1_000)
    mig_vf = sys_.pf.vf_migration(0)
    for target, error in ((S.PRE_COPY, MigError.VF_ERROR), (S.RUNNING_P2P, MigError.VF_ERROR)):
        try:
            await mig_vf.set_state(target)
        except MigrationError as exc:
            assert exc.error is error
        else:
            raise AssertionError(f"{target.name} accepted for a VF in the error state")
        assert mig_vf.state is S.RUNNING
        assert await device_state(sys_.pf, 0) is MigState.RUNNING
