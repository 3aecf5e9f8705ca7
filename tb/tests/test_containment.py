"""A hostile VF never crashes the simulation: each fault stays in the function that caused it
(docs/security.md). One directed test per weakness the hostile-VF campaign found, plus the
fault guard, Bus Master Enable, FLR reset values and mailbox recovery.

Every test here ends with traffic between two other VFs still flowing, and every test would
have ended the whole cocotb run with an exception from the model before the fixes (for the
ones that exercise a crash).
"""

import cocotb
from cocotb.triggers import First, Timer
from cocotb.utils import get_sim_time

import pcicore
from datasheet import descriptors as d
from datasheet import device, pci, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import QueueError
from datasheet.mailbox import Opcode
from datasheet.regs import FnError
from fabric import TLP
from iommu.events import Fault as IommuFault
from model import Nic
from model import events as ev
from pf_driver.vf_info import LinkState, MddPolicy, VfState
from tb.lib.system import build_system
from tb.lib.timing import expect_within
from tb.tests.test_datapath import frame, recv, traffic_ok, up

#: tests that act while a DMA is in flight run on the TLP fabric, where DMA takes simulated
#: time; on the transaction-level fabric a frame's DMA completes before anything else runs
IN_FLIGHT = TLP
PARTNER = bytes.fromhex("00163e000001")
ERR = regs.TXDCTL.field("ERR")
ENABLE = regs.TXDCTL.field("ENABLE")
DD = d.STATUS_DD.mask


def now() -> float:
    return get_sim_time("ns")


async def queue_error(vf, reg, q=0) -> QueueError:
    ctl = await vf.read_reg(reg, q)
    assert not ENABLE.get(ctl), f"{reg.name}[{q}] still enabled"
    return QueueError(ERR.get(ctl))


async def first_buffer_landed(ring, slot, data, timeout_ns=200_000):
    """Wait until the first bytes of ``data`` are in RX ``slot``'s buffer (the device is mid-frame)."""
    deadline = now() + timeout_ns
    while ring.data.read(slot * ring.buf_size, 64) != data[:64]:
        assert now() < deadline, "the frame's first buffer never landed"
        await Timer(5, "ns")


@cocotb.parametrize(how=["disable_and_zero_length", "software_reset"])
@cocotb.test()
async def rx_ring_torn_down_mid_frame(dut, how):
    """A 9000-byte frame is being written into five RX buffers when the guest disables the
    queue and zeroes RDLEN (or resets its function): the frame's work is cancelled, nothing
    completes, nothing divides by the zeroed length; the VF comes back; others never notice.
    Needs DMA in flight: TLP fabric."""
    sys_, vfs = await up(dut, fabric=IN_FLIGHT)
    victim = vfs[0]
    rx = victim.netdev.rx[0]
    victim.netdev.napi_disable(0)
    slot = rx.next_to_clean
    jumbo = frame(PARTNER, victim.mac, 1, 9000)
    send = cocotb.start_soon(sys_.nic.uplink.send(jumbo))
    await first_buffer_landed(rx, slot, jumbo)
    if how == "software_reset":
        resets = victim.resets
        await victim.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)
    else:
        await victim.write_reg(regs.RXDCTL, 0, 0)
        await victim.write_reg(regs.RDLEN, 0, 0)
    await send
    await Timer(50, "us")
    assert not rx.slot_status(slot)[1] & DD, "a cancelled frame was completed"
    await traffic_ok(vfs, 1)
    if how == "software_reset":
        victim.netdev.napi_enable(0)
        await expect_within(lambda: victim.resets > resets and victim.ready)
    else:
        assert await queue_error(victim, regs.RXDCTL) == QueueError.NONE
        await victim.netdev.stop()
        victim.netdev.napi_enable(0)
        await victim.netdev.open(victim.ring_size)
    pkt = frame(PARTNER, victim.mac, 2, 1500)
    await sys_.nic.uplink.send(pkt)
    assert await recv(victim.netdev) == pkt


@cocotb.test()
async def rx_buffer_beyond_the_address_space(dut):
    """An RX buffer whose end is past 2^64: the fabric refuses the write; the queue stops with
    DMA_FAULT, counted and interrupted, and nothing escapes the model."""
    sys_, vfs = await up(dut)
    vf = vfs[0]
    rx = vf.netdev.rx[0]
    rx.desc.write(rx.next_to_clean * d.DESC_SIZE, d.rx_desc((1 << 64) - 512, rx.buf_size))
    polls = vf.netdev.polls[0]
    await sys_.nic.uplink.send(frame(PARTNER, vf.mac, 3, 1000))
    await Timer(20, "us")
    assert await queue_error(vf, regs.RXDCTL) == QueueError.DMA_FAULT
    assert await vf.read_reg(regs.by_name("STAT_RX_ERRORS")) == 1
    assert await vf.read_reg(regs.QERR_COUNT, 0) == 1
    assert vf.netdev.polls[0] > polls  # its driver was interrupted
    await traffic_ok(vfs, 2)


@cocotb.test()
async def bus_master_cleared_faults_dma_and_holds_interrupts(dut):
    """A guest clears its own Bus Master Enable: its next DMA faults (the queue stops), the
    interrupt that reports it is held in the PBA instead of being sent, and it goes out when
    BME is set again."""
    sys_, vfs = await up(dut)
    vf = vfs[0]
    vector = vf.netdev.first_vector  # TX0 / RX0
    msi = vf.pdev.msi_vectors[vector]
    cmd = await vf.pdev.config_read_word(pci.PCI_COMMAND)
    await vf.pdev.config_write_word(pci.PCI_COMMAND, cmd & ~pci.PCI_COMMAND_MASTER)
    msi.event.clear()
    received = await vfs[1].read_reg(regs.by_name("STAT_RX_PACKETS"))
    assert await vf.start_xmit(frame(vf.mac, vfs[1].mac, 4))
    await Timer(20, "us")
    assert await queue_error(vf, regs.TXDCTL) == QueueError.DMA_FAULT
    assert await vfs[1].read_reg(regs.by_name("STAT_RX_PACKETS")) == received
    pba = vf.pdev.bar_window[device.MSIX_BAR]
    assert await pba.read_dword(device.MSIX_PBA_OFFSET) & 1 << vector, "interrupt not held pending"
    assert not msi.event.is_set(), "a function with BME clear sent an MSI-X message"
    await vf.pdev.config_write_word(pci.PCI_COMMAND, cmd)
    await First(msi.event.wait(), Timer(20, "us"))
    assert msi.event.is_set(), "the held interrupt was not sent when BME came back"
    assert not await pba.read_dword(device.MSIX_PBA_OFFSET) & 1 << vector
    await traffic_ok(vfs, 3)


async def burst(vf, count, size=9000):
    for n in range(count):
        while not await vf.start_xmit(frame(vf.mac, PARTNER, 100 + n, size)):
            await Timer(1, "us")


@cocotb.test()
async def tx_queue_stopped_and_zeroed_while_work_is_in_flight(dut):
    """The guest writes a bad tail (the queue stops) and then TDLEN=0 while the device is in
    the middle of a frame: the stopped queue's work is cancelled with it, so nothing computes
    with the zeroed length and no write-back lands.  Needs DMA in flight: TLP fabric."""
    sys_, vfs = await up(dut, fabric=IN_FLIGHT)
    vf = vfs[0]
    sender = cocotb.start_soon(burst(vf, 12))
    assert await sys_.nic.uplink.recv(timeout_ns=500_000) is not None  # the device is mid-burst
    await vf.write_reg(regs.TDT, 10_000, 0)
    await vf.write_reg(regs.TDLEN, 0, 0)
    head = await vf.read_reg(regs.TDH, 0)
    await Timer(100, "us")
    sender.cancel()
    assert await queue_error(vf, regs.TXDCTL) == QueueError.BAD_TAIL
    assert await vf.read_reg(regs.TDH, 0) == head, "cancelled work moved the head"
    await traffic_ok(vfs, 4)


@cocotb.test()
async def stale_writeback_never_lands_in_a_reprogrammed_ring(dut):
    """A stopped queue reprogrammed to a new ring and re-enabled while its old frame is still
    being read: the old work never writes back into the new ring or moves its head.  Needs DMA
    in flight: TLP fabric."""
    sys_, vfs = await up(dut, fabric=IN_FLIGHT)
    vf = vfs[0]
    new_ring, new_iova = vf.dma.dma_alloc_coherent(device.RING_MIN_DESCS * 8 * d.DESC_SIZE)
    sender = cocotb.start_soon(burst(vf, 12))
    assert await sys_.nic.uplink.recv(timeout_ns=500_000) is not None
    ctl = await vf.read_reg(regs.TXDCTL, 0)
    await vf.write_reg(regs.TDT, 10_000, 0)  # stop it (BAD_TAIL) ...
    await vf.write_reg(regs.TDBAL, new_iova & 0xFFFFFFFF, 0)  # ... and move it
    await vf.write_reg(regs.TDBAH, new_iova >> 32, 0)
    await vf.write_reg(regs.TDLEN, device.RING_MIN_DESCS * 8, 0)
    await vf.write_reg(regs.TXDCTL, ENABLE.put(ctl, 1), 0)
    await Timer(100, "us")
    sender.cancel()
    assert new_ring.read() == bytes(len(new_ring)), "a stale write-back landed in the new ring"
    assert await vf.read_reg(regs.TDH, 0) == 0
    assert ENABLE.get(await vf.read_reg(regs.TXDCTL, 0))
    await traffic_ok(vfs, 5)


@cocotb.test()
async def tx_chain_without_eop_waits_then_faults_when_closed(dut):
    """(From fuzz seed 26.) A chain whose buffer points nowhere but has no EOP yet is not a
    frame: the device fetches its descriptors and waits, reads no buffer, reports nothing.
    Once the guest closes the chain with EOP, the frame is read: the unmapped buffer faults
    (write-back ERR_DMA, the queue stops with DMA_FAULT), which the host sees."""
    sys_, vfs = await up(dut)
    vf = vfs[0]
    ring = vf.netdev.tx[1]
    faults, writebacks = [], []
    sys_.rc.iommu.events.subscribe(IommuFault, faults.append)
    port = device.vf_port(vf.vf_index)
    sys_.nic.events.subscribe(ev.Writeback, lambda e: e.fn == port and e.queue == 1 and writebacks.append(e))
    unmapped = 0x7_0000_0000
    await ring.post_raw([d.tx_desc(unmapped, 60, eop=False), d.tx_desc(ring.data_iova, 60, eop=False)])
    await Timer(50, "us")
    assert ENABLE.get(await vf.read_reg(regs.TXDCTL, 1)) and not faults and not writebacks
    await ring.post_raw([d.tx_desc(ring.data_iova, 60, eop=True)])
    await Timer(50, "us")
    assert await queue_error(vf, regs.TXDCTL, 1) == QueueError.DMA_FAULT
    assert [f.record.address for f in faults][:1] == [unmapped]
    assert [(w.slot, w.status) for w in writebacks] == [(k, DD | d.STATUS_ERR_DMA.mask) for k in range(3)]
    await traffic_ok(vfs, 3)


# -- FLR returns every register to its reset value ----------------------------------------------
async def config_space(pdev) -> list[int]:
    return [await pdev.config_read_dword(4 * reg) for reg in range(pci.PCI_CFG_SPACE_EXP_SIZE // 4)]


async def dirty(pdev, skip: set[int]) -> None:
    """Write all ones to every dword of the header and of each capability but the ``skip``
    offsets (Initiate FLR, VF Enable...)."""
    std, ext = await pcicore.list_capabilities(pdev)
    spans = [(0, pci.PCI_STD_HEADER_SIZEOF)]
    spans += [(pos, pci.PCI_CAP_SIZEOF[cap]) for cap, pos in std]
    spans += [(pos, pci.PCI_EXT_CAP_SIZEOF[cap]) for cap, pos in ext]
    for start, size in spans:
        for offset in range(start, start + size, 4):
            if offset not in skip:
                await pdev.config_write_dword(offset, 0xFFFFFFFF)


def differences(got, want, preserved: dict[int, int]) -> list[str]:
    out = []
    for reg, (g, w) in enumerate(zip(got, want)):
        mask = ~preserved.get(4 * reg, 0) & 0xFFFFFFFF
        if (g ^ w) & mask:
            out.append(f"{4 * reg:#05x}: {g:#010x}, reset value {w:#010x}")
    return out


#: bits an FLR leaves alone (PCIe Base 6.0 §6.6.2): Device Control Max_Payload_Size; in Link
#: Control ASPM Control, RCB, Common Clock, Extended Synch, Clock PM, HW Autonomous Width Disable
DEVCTL_PRESERVED = 0x7 << 5
LNKCTL_PRESERVED = 0x3 | 1 << 3 | 0xF << 6
#: AER registers are sticky (RWS, RW1CS, ROS, §7.8.4): the masks and severities written stay
AER_STICKY = (pci.PCI_ERR_UNCOR_MASK, pci.PCI_ERR_UNCOR_SEVER, pci.PCI_ERR_COR_MASK)


async def aer_preserved(pdev) -> dict[int, int]:
    pos = await pcicore.find_ext_capability(pdev, pci.PCI_EXT_CAP_ID_ERR)
    return {pos + off: 0xFFFFFFFF for off in AER_STICKY}


@cocotb.test()
async def pf_flr_returns_every_config_register_to_reset(dut):
    """Dirty every writable bit of the PF's config space, FLR: each dword reads its value from
    before enumeration again, except the link-wide fields and the sticky AER registers the spec
    preserves. (Command's I/O
    Space, Parity Error Response and SERR# Enable used to survive.)"""
    nic = Nic(total_vfs=4)
    reset_values = [await nic.pf.read_config_register(reg) for reg in range(pci.PCI_CFG_SPACE_EXP_SIZE // 4)]
    sys_ = await build_system(dut, nic=nic)
    await sys_.pf.sriov_configure(2)
    sys_.pf.mailbox.stop()  # the driver lets go of the device first
    pf = sys_.pf_dev
    exp = await pcicore.find_capability(pf, pci.PCI_CAP_ID_EXP)
    sriov = await pcicore.find_ext_capability(pf, pci.PCI_EXT_CAP_ID_SRIOV)
    devctl = exp + pci.PCI_EXP_DEVCTL
    await dirty(pf, {devctl, sriov + pci.PCI_SRIOV_CTRL, sriov + pci.PCI_SRIOV_NUM_VF})
    await pf.config_write_word(devctl, 0x7FFF)  # every Device Control bit but Initiate FLR
    assert await pf.config_read_word(pci.PCI_COMMAND) & pci.PCI_COMMAND_IO
    await pcicore.pcie_flr(pf)
    preserved = {devctl: DEVCTL_PRESERVED, exp + pci.PCI_EXP_LNKCTL: LNKCTL_PRESERVED, **await aer_preserved(pf)}
    problems = differences(await config_space(pf), reset_values, preserved)
    assert not problems, "after PF FLR:\n" + "\n".join(problems)
    assert await pf.config_read_word(pci.PCI_COMMAND) == 0


@cocotb.test()
async def vf_flr_returns_every_config_register_to_reset(dut):
    """The same for a VF, against a sibling VF nobody touched."""
    sys_ = await build_system(dut, total_vfs=4)
    await sys_.pf.sriov_configure(2)
    vf, sibling = sys_.pf.virtfns
    exp = await pcicore.find_capability(vf, pci.PCI_CAP_ID_EXP)
    devctl = exp + pci.PCI_EXP_DEVCTL
    before = await config_space(sibling)
    await dirty(vf, {devctl})
    await vf.config_write_word(devctl, 0x7FFF)
    assert differences(await config_space(vf), before, {}), "nothing was dirtied"
    await pcicore.pcie_flr(vf)
    # the host's set-up of the sibling set Extended Tag Field Enable; an FLR clears it
    preserved = {
        devctl: DEVCTL_PRESERVED | 1 << 8,
        exp + pci.PCI_EXP_LNKCTL: LNKCTL_PRESERVED,
        **await aer_preserved(vf),
    }
    problems = differences(await config_space(vf), before, preserved)
    assert not problems, "after VF FLR:\n" + "\n".join(problems)


# -- the PF takes its mailbox back ------------------------------------------------------------------
@cocotb.test()
async def pf_takes_back_a_mailbox_a_vf_holds_forever(dut):
    """A guest takes VFU and never lets go: the PF takes the buffer back with RVFU after
    MBX_LOCK_HOLD_NS, counts it against the VF, delivers its message; no lock timeout is paid
    and the other VF's requests never wait."""
    sys_ = await build_system(dut, total_vfs=4)
    vfs = await sys_.enable_vfs(2)
    hog, other = vfs
    vfu = regs.VF_MAILBOX.field("VFU").mask
    await hog.write_reg(regs.VF_MAILBOX, vfu)
    assert await hog.read_reg(regs.VF_MAILBOX) & vfu
    start = now()
    sys_.pf.set_vf_link_state(hog.vf_index, LinkState.DISABLE)  # the PF needs the hog's buffer
    await expect_within(lambda: sys_.pf.vf_info(hog.vf_index).lock_hogs == 1, step_ns=1_000)
    assert now() - start <= mbx.MBX_LOCK_HOLD_NS + 20_000
    await expect_within(lambda: hog.link_up is False, step_ns=1_000)  # the message got through
    assert sys_.pf.mailbox.timeouts == 0
    assert (await other.request(Opcode.GET_QUEUES)).ack


# -- the fault guard and the error state ----------------------------------------------------------
@cocotb.test()
async def engine_fault_is_contained_and_the_pf_resets_the_vf(dut):
    """An unexpected exception inside VF 0's DMA engine turn: VF 0 alone enters the error state
    (FunctionError event with its RID, PF_VFERR and PF_ICR.VFERR, the PF's interrupt); the PF
    driver logs and counts it and resets the VF; its driver recovers and its traffic flows again. Under an MDD policy
    that disables a VF after two events, the second leaves it disabled until the PF re-admits it."""
    sys_, vfs = await up(dut)
    victim = vfs[0]
    events = []
    sys_.nic.events.subscribe(ev.FunctionError, events.append)
    resets = victim.resets
    sys_.nic.inject.engine_fault(device.vf_port(victim.vf_index))
    assert await victim.start_xmit(frame(victim.mac, vfs[1].mac, 6))
    await expect_within(lambda: events, step_ns=1_000)
    (error,) = events
    assert (error.fn, error.rid, error.cause) == (device.vf_port(0), int(victim.pdev.pcie_id), FnError.ENGINE)
    await traffic_ok(vfs, 6)
    await expect_within(lambda: sys_.pf.vf_info(0).errors == 1 and victim.resets > resets and victim.ready)
    assert not regs.STATUS.field("FN_ERR").get(await victim.read_reg(regs.STATUS))
    pkt = frame(victim.mac, vfs[1].mac, 7)
    assert await victim.start_xmit(pkt)
    assert await recv(vfs[1].netdev) == pkt

    sys_.pf.set_mdd_policy(MddPolicy(disable_after=2, window_ns=10_000_000))
    sys_.nic.inject.engine_fault(device.vf_port(0))
    assert await victim.start_xmit(frame(victim.mac, vfs[1].mac, 8))
    await expect_within(lambda: sys_.pf.vf_info(0).state is VfState.DISABLED, step_ns=1_000)
    status = await victim.read_reg(regs.STATUS)
    assert regs.STATUS.field("FN_ERR").get(status)
    assert regs.FN_ERROR.field("CAUSE").get(await victim.read_reg(regs.FN_ERROR)) == FnError.ENGINE
    await victim.write_reg(regs.TXDCTL, 1, 1)  # a disabled VF's queues refuse to start
    assert await queue_error(victim, regs.TXDCTL, 1) == QueueError.FN_ERROR
    reply = await victim.request(Opcode.GET_QUEUES)
    assert reply.nack and reply.payload[0] == mbx.MbxError.POLICY
    await traffic_ok(vfs, 7)
    resets = victim.resets
    await sys_.pf.reset_vf(0)
    await expect_within(lambda: victim.resets > resets and victim.ready)
    assert sys_.pf.vf_info(0).state is VfState.CONFIGURED
    assert sys_.pf.errors == 0  # a VF's errors never showed as the PF's own (PF_ICR.FN_ERR)
    assert not regs.PF_ICR.field("VFERR").get(await sys_.pf.read_reg(regs.PF_ICR))  # all taken


@cocotb.test()
async def pf_engine_fault_resets_the_pf_only(dut):
    """The PF's own engine faults: the PF driver sees PF_ICR.FN_ERR, resets the PF and rebuilds
    its port; the VFs see RSTI/RSTD and recover, and the reset cleared PF_ICR."""
    sys_, vfs = await up(dut, num_vfs=2, open_pf=True)
    sys_.nic.inject.engine_fault(device.PF_PORT)
    assert await sys_.pf.netdev.start_xmit(frame(sys_.pf.mac, vfs[0].mac, 9))
    await expect_within(lambda: sys_.pf.errors == 1 and all(vf.ready for vf in vfs), step_ns=1_000)
    await expect_within(lambda: sys_.pf.netdev.is_open and all(vf.resets for vf in vfs))
    assert not regs.STATUS.field("FN_ERR").get(await sys_.pf.read_reg(regs.STATUS))
    assert not regs.PF_ICR.field("FN_ERR").get(await sys_.pf.read_reg(regs.PF_ICR))
    pkt = frame(sys_.pf.mac, vfs[0].mac, 10)
    assert await sys_.pf.netdev.start_xmit(pkt)
    assert await recv(vfs[0].netdev) == pkt
