"""PF<->VF mailbox: every opcode end to end, policy, malformed input, flood, FLR, PF reset, disable."""

import cocotb
from cocotb.triggers import Event, Timer, gather, select
from cocotb.utils import get_sim_time

import pcicore
from datasheet import device, pci, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import MbxError, Message, Opcode
from fabric import TLP
from model import events as ev
from pf_driver.vf_info import LinkState, VfState
from tb.lib.system import build_system
from tb.lib.timing import expect_within
from vf_driver.mailbox import MailboxTimeout

MAC_A = bytes.fromhex("02aabbccdd01")
VF0_PORT = device.vf_port(0)
MCAST = [bytes.fromhex("01005e000001"), bytes.fromhex("3333000000fb")]


def nack_code(reply):
    assert reply.nack and not reply.ack, f"expected NACK, got {reply}"
    return MbxError(reply.payload[0])


async def exercise_every_opcode(sys_, vf):
    """All VF->PF opcodes with valid input; check the PF's view after each."""
    info = sys_.pf.vf_info(vf.vf_index)
    assert info.state is VfState.CTS and info.api_version == mbx.API_VERSION
    assert vf.mac == info.permanent_mac and (vf.num_tx_queues, vf.num_rx_queues) == (device.VF_QUEUE_PAIRS,) * 2
    mac = MAC_A[:5] + bytes([vf.vf_index])
    assert (await vf.request(Opcode.SET_MAC, mbx.mac_to_words(mac))).ack
    assert info.mac == mac
    words = [len(MCAST)] + [w for m in MCAST for w in mbx.mac_to_words(m)]
    assert (await vf.request(Opcode.SET_MULTICAST, words)).ack
    assert info.multicast == MCAST
    assert (await vf.request(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(100, 1)])).ack
    assert (await vf.request(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(200, 1)])).ack
    assert (await vf.request(Opcode.SET_VLAN, [100])).ack
    assert info.vlans == {200}
    sys_.pf.set_vf_trust(vf.vf_index, True)
    assert (await vf.request(Opcode.SET_PROMISC, [mbx.PROMISC_MULTICAST.mask])).ack
    assert info.promisc_multicast and not info.promisc_unicast
    iova = 0x10_0000 * (vf.vf_index + 1)
    assert (await vf.request(Opcode.CONFIG_QUEUES, [mbx.QCFG_RX.put(1, 1), iova, 0, 256, 2048])).ack
    assert info.state is VfState.CONFIGURED and info.rx_rings[1].iova == iova
    reply = await vf.request(Opcode.GET_QUEUES)
    assert reply.payload == [device.VF_QUEUE_PAIRS, device.VF_QUEUE_PAIRS, 0]
    reply = await vf.request(Opcode.API_NEGOTIATE, [1 << 16 | 9])
    assert reply.payload == [1 << 16 | mbx.API_VERSION[1]]
    assert (await vf.request(Opcode.RESET)).cts  # RESET again clears what the VF asked for
    assert info.multicast == [] and info.vlans == set() and info.mac == info.permanent_mac


@cocotb.test()
@cocotb.parametrize(num_vfs=[1, 8, 64])
async def every_opcode_happy_path(dut, num_vfs):
    sys_ = await build_system(dut, total_vfs=64)
    vfs = await sys_.enable_vfs(num_vfs)
    assert len({vf.mac for vf in vfs}) == num_vfs
    await gather(*(exercise_every_opcode(sys_, vf) for vf in vfs))
    # LINK_STATUS: the uplink goes down and up; the PF (LSC interrupt) tells every VF, which ACKs
    sys_.nic.uplink.set_link(False)
    await expect_within(lambda: all(vf.link_up is False for vf in vfs))
    sys_.nic.uplink.set_link(True)
    await expect_within(lambda: all(vf.link_events[-1:] == [(True, device.UPLINK_SPEED_MBPS)] for vf in vfs))
    await expect_within(lambda: not any(i.awaiting_ack for i in sys_.pf.mailbox.vfs))
    assert sys_.pf.mailbox.timeouts == 0 and all(vf.mbx.timeouts == 0 for vf in vfs)


@cocotb.test()
async def administrator_policy(dut):
    """Admin MAC vs untrusted/trusted VF, promiscuous needs trust, port VLAN, link state, spoofchk."""
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(2)
    vf, info = vfs[0], sys_.pf.vf_info(0)
    await sys_.pf.set_vf_mac(0, MAC_A)
    assert (await vf.request(Opcode.RESET)).payload == mbx.mac_to_words(MAC_A)
    other = bytes.fromhex("02aabbccdd99")
    assert nack_code(await vf.request(Opcode.SET_MAC, mbx.mac_to_words(other))) is MbxError.POLICY
    assert info.mac == MAC_A
    assert nack_code(await vf.request(Opcode.SET_PROMISC, [mbx.PROMISC_UNICAST.mask])) is MbxError.POLICY
    assert not info.promisc_unicast
    sys_.pf.set_vf_trust(0, True)
    assert (await vf.request(Opcode.SET_MAC, mbx.mac_to_words(other))).ack and info.mac == other
    assert (await vf.request(Opcode.SET_PROMISC, [mbx.PROMISC_UNICAST.mask])).ack and info.promisc_unicast
    await sys_.pf.set_vf_vlan(1, 42)
    assert nack_code(await vfs[1].request(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(7, 1)])) is MbxError.POLICY
    await sys_.pf.set_vf_spoofchk(1, False)
    assert not sys_.pf.vf_info(1).spoofchk and sys_.pf.vf_info(0).spoofchk
    sys_.pf.set_vf_link_state(1, LinkState.DISABLE)
    await expect_within(lambda: vfs[1].link_up is False)
    assert vfs[0].link_up is None  # only VF 1 was told


@cocotb.test()
async def malformed_messages_get_documented_replies(dut):
    """Unknown opcode, bad lengths, bad parameters, message before RESET: NACK, nothing changes."""
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(2)
    vf, info = vfs[0], sys_.pf.vf_info(0)
    before = (info.mac, list(info.multicast), set(info.vlans), info.state)
    cases = [
        (0x0077, [], MbxError.UNKNOWN_OPCODE),
        (Opcode.LINK_STATUS, [1, 1000], MbxError.UNKNOWN_OPCODE),  # PF->VF opcode from a VF
        (Opcode.SET_MAC, [1], MbxError.BAD_LENGTH),
        (Opcode.RESET, [1, 2, 3], MbxError.BAD_LENGTH),
        (Opcode.SET_MULTICAST, [3, 1, 2], MbxError.BAD_LENGTH),
        (Opcode.SET_MULTICAST, [8] + [0] * 14, MbxError.INVALID),
        (Opcode.SET_MULTICAST, [1] + mbx.mac_to_words(MAC_A), MbxError.INVALID),  # unicast in mc list
        (Opcode.SET_MAC, mbx.mac_to_words(MCAST[0]), MbxError.INVALID),
        (Opcode.SET_MAC, [0, 0], MbxError.INVALID),
        (Opcode.SET_VLAN, [4095 | 1 << 31], MbxError.INVALID),
        (Opcode.SET_VLAN, [5 | 1 << 20], MbxError.INVALID),
        (Opcode.CONFIG_QUEUES, [device.VF_QUEUE_PAIRS, 0x1000, 0, 256, 0], MbxError.INVALID),
        (Opcode.CONFIG_QUEUES, [0, 0x1040, 0, 256, 0], MbxError.INVALID),  # misaligned ring
        (Opcode.CONFIG_QUEUES, [0, 0x1000, 0, 100, 0], MbxError.INVALID),  # not a power of two
        (Opcode.CONFIG_QUEUES, [1 << 31, 0x1000, 0, 256, 64], MbxError.INVALID),  # RX buffer too small
        (Opcode.API_NEGOTIATE, [2 << 16], MbxError.UNSUPPORTED_API),
    ]
    for opcode, payload, expected in cases:
        await Timer(mbx.MBX_RATE_REFILL_NS, "ns")  # stay under the rate limit
        reply = await vf.mbx.request(opcode, payload)
        assert reply.opcode == opcode and nack_code(reply) is expected, f"{opcode:#x} {payload}"
    assert (info.mac, info.multicast, info.vlans, info.state) == before
    # a header whose LEN disagrees with the opcode's layout
    assert nack_code(await vf.mbx.request(Opcode.GET_QUEUES, [0] * 15)) is MbxError.BAD_LENGTH

    # before RESET: a VF that skipped the handshake (after its FLR) is refused
    await pcicore.pcie_flr(vf.pdev)
    await vf.pdev.set_master()
    vf.pdev.msix_enabled = False
    await pcicore.pci_alloc_irq_vectors(vf.pdev, 1, device.VF_MSIX_VECTORS)
    await expect_within(lambda: info.state is VfState.NOT_RESET)
    assert nack_code(await vf.mbx.request(Opcode.SET_MAC, mbx.mac_to_words(MAC_A))) is MbxError.NOT_RESET
    assert info.mac == info.permanent_mac
    assert (await vfs[1].request(Opcode.GET_QUEUES)).ack  # the other VF is unaffected


@cocotb.test()
async def buffer_ownership_enforced(dut):
    """Writing a mailbox buffer without holding its lock is ignored and flagged, on both sides."""
    sys_ = await build_system(dut, total_vfs=8)
    await sys_.enable_vfs(2, probe=False)  # no VF driver: raw register access
    bar = sys_.pf.virtfns[0].bar_window[device.REG_BAR]
    VFU = regs.VF_MAILBOX.field("VFU").mask
    await bar.write_dword(regs.VF_MBMEM.at(3), 0x11111111)  # no VFU held
    assert await sys_.pf.read_reg(regs.PF_MBMEM, 3) == 0
    assert regs.ERR_STATUS.field("MBX").get(await bar.read_dword(regs.ERR_STATUS.offset))
    # PF holds PFU: the VF cannot take VFU, its writes are still refused
    PFU = regs.PF_MAILBOX.field("PFU").mask
    await sys_.pf.write_reg(regs.PF_MAILBOX, PFU, 0)
    await bar.write_dword(regs.VF_MAILBOX.offset, VFU)
    assert not await bar.read_dword(regs.VF_MAILBOX.offset) & VFU
    await bar.write_dword(regs.VF_MBMEM.at(3), 0x22222222)
    assert await sys_.pf.read_reg(regs.PF_MBMEM, 3) == 0
    await sys_.pf.write_reg(regs.PF_MBMEM, 0x33333333, 3)  # the lock holder may write
    assert await bar.read_dword(regs.VF_MBMEM.at(3)) == 0x33333333
    await sys_.pf.write_reg(regs.PF_MAILBOX, 0, 0)  # release
    # VF takes VFU: the PF is refused
    await bar.write_dword(regs.VF_MAILBOX.offset, VFU)
    assert await bar.read_dword(regs.VF_MAILBOX.offset) & VFU
    await sys_.pf.write_reg(regs.PF_MAILBOX, PFU, 0)
    assert not await sys_.pf.read_reg(regs.PF_MAILBOX, 0) & PFU
    await sys_.pf.write_reg(regs.PF_MBMEM, 0x44444444, 3)
    assert await bar.read_dword(regs.VF_MBMEM.at(3)) == 0x33333333
    assert regs.ERR_STATUS.field("MBX").get(await sys_.pf.read_reg(regs.ERR_STATUS))
    # RVFU releases a stuck VF lock; VF 1's buffer was never touched
    await sys_.pf.write_reg(regs.PF_MAILBOX, regs.PF_MAILBOX.field("RVFU").mask, 0)
    assert not await sys_.pf.read_reg(regs.PF_MAILBOX, 0) & regs.PF_MAILBOX.field("VFU").mask
    assert [await sys_.pf.read_reg(regs.PF_MBMEM, 16 + i) for i in range(16)] == [0] * 16
    # the mailbox of a VF that does not exist: write flagged, read 0, no crash
    await sys_.pf.write_reg(regs.PF_MAILBOX, PFU, 5)
    assert await sys_.pf.read_reg(regs.PF_MAILBOX, 5) == 0
    assert await sys_.pf.read_reg(regs.ERR_LAST_OFFSET) == regs.PF_MAILBOX.at(5)


@cocotb.test()
async def reply_acknowledges_and_posts_in_one_write(dut):
    """The PF driver reads a request without the lock, takes the buffer for its reply (the VF
    cannot take it meanwhile), then writes ACK and STS together: the VF sees PFACK and PFSTS in
    one read, from one interrupt, and the write released the buffer. The test plays the PF (no
    PF driver bound)."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    pf = system.pf_dev
    await pf.enable_device()
    (vf,) = await pcicore.pci_enable_sriov(pf, 1)
    await vf.set_master()
    await pcicore.pci_alloc_irq_vectors(vf, 1, device.VF_MSIX_VECTORS)
    fired = []

    async def handler():
        fired.append(get_sim_time("ns"))

    pcicore.request_irq(vf, device.VF_MBX_VECTOR, handler)
    pf_bar, vf_bar = pf.bar_window[device.REG_BAR], vf.bar_window[device.REG_BAR]
    VF = regs.VF_MAILBOX.masks
    PF = regs.PF_MAILBOX.masks
    request = Message(Opcode.GET_QUEUES, []).encode()
    await vf_bar.write_dword(regs.VF_MAILBOX.offset, VF["VFU"])
    await vf_bar.write(regs.VF_MBMEM.offset, b"".join(w.to_bytes(4, "little") for w in request))
    await vf_bar.write_dword(regs.VF_MAILBOX.offset, VF["REQ"])
    assert await pf_bar.read_dword(regs.PF_MBX_REQ.offset) == 1
    assert await pf_bar.read_dword(regs.PF_MBMEM.at(0)) == request[0]  # no lock taken
    await pf_bar.write_dword(regs.PF_MAILBOX.at(0), PF["PFU"])
    assert await pf_bar.read_dword(regs.PF_MAILBOX.at(0)) == PF["PFU"]
    await vf_bar.write_dword(regs.VF_MAILBOX.offset, VF["VFU"])  # the PF still holds it: refused
    assert await vf_bar.read_dword(regs.VF_MAILBOX.offset) == VF["PFU"] | VF["RSTI"]
    assert not fired  # taking the request raised nothing
    reply = Message(Opcode.GET_QUEUES, [1, 1, 0], ack=True).encode()
    await pf_bar.write(regs.PF_MBMEM.offset, b"".join(w.to_bytes(4, "little") for w in reply))
    await pf_bar.write_dword(regs.PF_MAILBOX.at(0), PF["ACK"] | PF["STS"])
    assert await pcicore.wait_for_irq(vf, device.VF_MBX_VECTOR, timeout_ns=100_000)
    assert not await pcicore.wait_for_irq(vf, device.VF_MBX_VECTOR, timeout_ns=20_000)  # one per write
    assert len(fired) == 1
    assert await vf_bar.read_dword(regs.VF_MAILBOX.offset) == VF["PFACK"] | VF["PFSTS"] | VF["RSTI"]
    assert await vf_bar.read_dword(regs.VF_MAILBOX.offset) == VF["RSTI"]  # read to clear; PFU released
    await vf_bar.write_dword(regs.VF_MAILBOX.offset, VF["VFU"])
    assert await vf_bar.read_dword(regs.VF_MAILBOX.offset) & VF["VFU"]
    assert [await vf_bar.read_dword(regs.VF_MBMEM.at(i)) for i in range(len(reply))] == reply


@cocotb.test()
async def vf_reads_reply_without_the_lock(dut):
    """The access pattern of the VF driver's read of a PF message (Linux's ixgbevf_read_mbx_vf):
    one read of the whole buffer, then ACK, without taking VFU. The device serves a buffer
    read whoever holds the lock (only writes need it) and takes an ACK without VFU: PF_MBX_ACK
    is set and the PF's vector raised, nothing is flagged, and the buffer stays free for the
    PF's next message. The test plays both drivers with raw register accesses."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    pf = system.pf_dev
    await pf.enable_device()
    await pf.set_master()
    await pcicore.pci_alloc_irq_vectors(pf, 1, device.PF_MSIX_VECTORS)
    (vf,) = await pcicore.pci_enable_sriov(pf, 1)
    pf_bar, vf_bar = pf.bar_window[device.REG_BAR], vf.bar_window[device.REG_BAR]
    VF, PF = regs.VF_MAILBOX.masks, regs.PF_MAILBOX.masks
    await pf_bar.write_dword(regs.PF_IMR.offset, regs.PF_IMR.write_mask)
    reply = Message(Opcode.GET_QUEUES, [1, 1, 0], ack=True).encode()
    await pf_bar.write_dword(regs.PF_MAILBOX.at(0), PF["PFU"])
    await pf_bar.write(regs.PF_MBMEM.offset, b"".join(w.to_bytes(4, "little") for w in reply))
    # a read while the PF holds the buffer is served as any read: the buffer as it is
    assert await vf_bar.read_dword(regs.VF_MBMEM.at(0)) == reply[0]
    await pf_bar.write_dword(regs.PF_MAILBOX.at(0), PF["ACK"] | PF["STS"])  # releases PFU
    assert await vf_bar.read_dword(regs.VF_MAILBOX.offset) & (VF["PFACK"] | VF["PFSTS"]) == VF["PFACK"] | VF["PFSTS"]
    data = await vf_bar.read(regs.VF_MBMEM.offset, 4 * mbx.MBX_DWORDS)  # one read, no VFU
    words = [int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4)]
    assert words[: len(reply)] == reply
    assert Message.decode(words[: len(reply)]).payload == [1, 1, 0]
    await pcicore.wait_for_irq(pf, device.PF_MBX_VECTOR, timeout_ns=1)  # forget what fired so far
    await vf_bar.write_dword(regs.VF_MAILBOX.offset, VF["ACK"])  # without VFU
    assert await pf_bar.read_dword(regs.PF_MBX_ACK.offset) == 1
    assert await pcicore.wait_for_irq(pf, device.PF_MBX_VECTOR, timeout_ns=100_000)
    assert not await vf_bar.read_dword(regs.VF_MAILBOX.offset) & (VF["VFU"] | VF["PFU"])
    assert not regs.ERR_STATUS.field("MBX").get(await vf_bar.read_dword(regs.ERR_STATUS.offset))
    # the buffer is free: the PF takes it for its next message at once
    await pf_bar.write_dword(regs.PF_MAILBOX.at(0), PF["PFU"])
    assert await pf_bar.read_dword(regs.PF_MAILBOX.at(0)) == PF["PFU"]


@cocotb.test()
async def stray_acks_change_nothing(dut):
    """ACKs from a VF that owes none (now that a VF ACKs without the lock, any VF can write one
    at any time): the PF owes that VF nothing afterwards and counts no timeout, the VF's next
    request and a notification are served as usual, and the other VF sees nothing of it."""
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(2)
    hostile, other = vfs
    ack = regs.VF_MAILBOX.field("ACK").mask
    for _ in range(50):
        await hostile.write_reg(regs.VF_MAILBOX, ack)
    await Timer(2 * mbx.MBX_TIMEOUT_NS, "ns")  # several service rounds
    assert not any(info.awaiting_ack for info in sys_.pf.mailbox.vfs)
    assert sys_.pf.mailbox.timeouts == 0
    assert (await hostile.request(Opcode.GET_QUEUES)).ack and (await other.request(Opcode.GET_QUEUES)).ack
    sys_.nic.uplink.set_link(False)  # a notification to both, each ACKs it
    await expect_within(lambda: hostile.link_up is False and other.link_up is False)
    await expect_within(lambda: not any(info.awaiting_ack for info in sys_.pf.mailbox.vfs))
    assert sys_.pf.mailbox.timeouts == 0 and hostile.mbx.timeouts == 0 and other.mbx.timeouts == 0
    assert sys_.pf.vf_info(other.vf_index).nacked == 0


@cocotb.test()
async def summaries_cleared_in_one_write(dut):
    """The PF driver clears what a service round took from the per-VF summaries (PF_MBX_REQ,
    PF_MBX_ACK, PF_VFLRE, PF_VFERR: contiguous, write 1 to clear) in one write spanning them:
    the bits written 1 clear, the dwords written 0 between clear nothing, and a bit that rose
    after the read survives. The test plays the PF; two VFs ring REQ and ACK."""
    system = await build_system(dut, total_vfs=64, bind_drivers=False)
    pf = system.pf_dev
    await pf.enable_device()
    vfs = await pcicore.pci_enable_sriov(pf, 40)
    pf_bar = pf.bar_window[device.REG_BAR]
    VF = regs.VF_MAILBOX.masks
    bar = [vf.bar_window[device.REG_BAR] for vf in vfs]
    await bar[1].write_dword(regs.VF_MAILBOX.offset, VF["REQ"])
    await bar[33].write_dword(regs.VF_MAILBOX.offset, VF["ACK"])
    await bar[2].write_dword(regs.VF_MAILBOX.offset, VF["ACK"])
    taken = {regs.PF_MBX_REQ.at(0): 1 << 1, regs.PF_MBX_ACK.at(1): 1 << 1}
    assert [await pf_bar.read_dword(at) for at in taken] == list(taken.values())
    await bar[5].write_dword(regs.VF_MAILBOX.offset, VF["REQ"])  # after the read: not taken
    first, last = min(taken), max(taken)
    await pf_bar.write(first, b"".join(taken.get(at, 0).to_bytes(4, "little") for at in range(first, last + 4, 4)))
    assert await pf_bar.read_dword(regs.PF_MBX_REQ.at(0)) == 1 << 5
    assert await pf_bar.read_dword(regs.PF_MBX_ACK.at(0)) == 1 << 2  # in the span, written 0
    assert await pf_bar.read_dword(regs.PF_MBX_ACK.at(1)) == 0
    assert not regs.ERR_STATUS.field("MBX").get(await pf_bar.read_dword(regs.ERR_STATUS.offset))


@cocotb.test()
async def pf_icr_read_with_the_summaries(dut):
    """PF_ICR records the PF's own interrupt causes (link change, PF error) whatever PF_IMR says,
    and sits just before the per-VF summaries: one read returns it with a VF's REQ, one write 1
    clears it, a masked cause raises no interrupt and an enabled one does, a PF reset clears it,
    and a VF cannot reach it (its BAR0 has nothing there). (VFERR, set while a VF is in the error
    state: ``engine_fault_is_contained_and_the_pf_resets_the_vf``.) The test plays the PF."""
    system = await build_system(dut, total_vfs=8, bind_drivers=False)
    pf = system.pf_dev
    await pf.enable_device()
    await pf.set_master()
    await pcicore.pci_alloc_irq_vectors(pf, 1, device.PF_MSIX_VECTORS)
    vfs = await pcicore.pci_enable_sriov(pf, 2)
    pf_bar, vf_bar = pf.bar_window[device.REG_BAR], vfs[1].bar_window[device.REG_BAR]
    LSC, FN_ERR = (regs.PF_ICR.field(name).mask for name in ("LSC", "FN_ERR"))
    first, end = regs.PF_ICR.offset, regs.PF_VFLRE.end
    await pf_bar.write_dword(regs.PF_IMR.offset, 0)
    await pf_bar.write_dword(regs.PF_ICR.offset, 0xFFFFFFFF)  # whatever came before
    assert await pf_bar.read_dword(regs.PF_ICR.offset) == 0  # (the read flushes the writes)
    await pcicore.wait_for_irq(pf, device.PF_MBX_VECTOR, timeout_ns=1)
    system.nic.uplink.set_link(False)
    await vf_bar.write_dword(regs.VF_MAILBOX.offset, regs.VF_MAILBOX.field("REQ").mask)
    data = await pf_bar.read(first, end - first)  # one read: PF_ICR, then the summaries
    block = {first + k: int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4)}
    assert block[regs.PF_ICR.offset] == LSC
    assert block[regs.PF_MBX_REQ.at(0)] == 1 << 1
    assert not regs.STATUS.field("LINK_UP").get(await pf_bar.read_dword(regs.STATUS.offset))
    assert not await pcicore.wait_for_irq(pf, device.PF_MBX_VECTOR, timeout_ns=20_000)  # masked
    await pf_bar.write_dword(regs.PF_ICR.offset, FN_ERR)  # another cause's bit: LSC stays
    assert await pf_bar.read_dword(regs.PF_ICR.offset) == LSC
    await pf_bar.write_dword(regs.PF_ICR.offset, 0xFFFFFFFF)
    assert await pf_bar.read_dword(regs.PF_ICR.offset) == 0
    await pf_bar.write_dword(regs.PF_IMR.offset, regs.PF_IMR.field("LSC").mask)
    assert await pf_bar.read_dword(regs.PF_IMR.offset) == regs.PF_IMR.field("LSC").mask
    system.nic.uplink.set_link(True)
    assert await pcicore.wait_for_irq(pf, device.PF_MBX_VECTOR, timeout_ns=100_000)
    assert await pf_bar.read_dword(regs.PF_ICR.offset) == LSC
    await pf_bar.write_dword(regs.CTRL.offset, regs.CTRL.field("RST").mask)
    assert await pf_bar.read_dword(regs.PF_ICR.offset) == 0  # a PF reset clears it
    assert await vf_bar.read_dword(regs.PF_ICR.offset) == 0  # not the VF's: unimplemented there
    assert regs.ERR_STATUS.field("UNIMPL").get(await vf_bar.read_dword(regs.ERR_STATUS.offset))
    assert not regs.ERR_STATUS.field("UNIMPL").get(await pf_bar.read_dword(regs.ERR_STATUS.offset))


@cocotb.test()
async def flr_while_the_pf_answers_a_request(dut):
    """A VF FLR that lands while the PF driver handles that VF's request (after reading it,
    before taking the buffer for its reply) clears the mailbox: the PF takes the buffer of the
    reset VF for its reply and posts it (ACK and STS), writing no buffer it does not hold; its
    service carries on, the VF probes again, the other VF is undisturbed. The FLR is swept over
    the PF's handling from the moment it clears the VF's REQ bit, and must land in that window
    at least once. (One landing between the PF's taking the buffer and its writes is refused and
    flagged as for any unheld write: no driver can take the lock and write in one request.) A
    race in simulated time: TLP fabric."""
    sys_ = await build_system(dut, total_vfs=8, fabric=TLP)
    vfs = await sys_.enable_vfs(2)
    pdev = vfs[0].pdev
    exp = await pcicore.pci_find_capability(pdev, pci.PCI_CAP_ID_EXP)
    violations, resets, pf_mailbox = [], [], []
    sys_.nic.events.subscribe(ev.MailboxViolation, violations.append)
    sys_.nic.events.subscribe(ev.Reset, lambda e: resets.append(len(pf_mailbox)) if e.fn == VF0_PORT else None)
    req_cleared = Event()

    def on_pf_write(e: ev.MmioWrite) -> None:
        if e.fn == device.PF_PORT and e.bar == device.REG_BAR:
            if e.offset == regs.PF_MAILBOX.at(0):
                pf_mailbox.append(e.value)
            elif e.offset == regs.PF_MBX_REQ.at(0) and e.value & 1:
                req_cleared.set()

    sys_.nic.events.subscribe(ev.MmioWrite, on_pf_write)
    ACK, STS, PFU = (regs.PF_MAILBOX.field(name).mask for name in ("ACK", "STS", "PFU"))
    hits = 0
    for delay_ns in range(0, 600, 40):
        vf = sys_.vfs[0]
        devctl = await pdev.config_read_word(exp + pci.PCI_EXP_DEVCTL)
        req_cleared.clear()
        resets.clear()

        async def ask(vf=vf):
            try:
                await vf.request(Opcode.SET_MAC, mbx.mac_to_words(MAC_A))
            except MailboxTimeout:
                pass

        asking = cocotb.start_soon(ask())
        await req_cleared.wait()
        if delay_ns:
            await Timer(delay_ns, "ns")
        await pdev.config_write_word(exp + pci.PCI_EXP_DEVCTL, devctl | pci.PCI_EXP_DEVCTL_BCR_FLR)
        await Timer(int(pci.PCI_FLR_DELAY_S * 1e9), "ns")
        assert resets, "the FLR did not reset the VF"
        after = pf_mailbox[resets[0] :]
        if after[:2] == [PFU, ACK | STS]:  # the lock taken after the reset, the reply posted under it
            hits += 1
            assert not [v for v in violations if v.side == "pf"], f"FLR {delay_ns} ns in: {violations}"
        violations.clear()  # an FLR between the PF's lock and its write is flagged, as any
        await sys_.rebind_vf(0)
        await asking
        assert sys_.vfs[0].ready
    assert hits, "no FLR landed while the PF answered the request"
    assert (await vfs[1].request(Opcode.GET_QUEUES)).ack  # the other VF was never disturbed


@cocotb.test()
async def flood_from_one_vf_does_not_starve_others(dut):
    """VF 0 floods; it is rate limited, while every other VF keeps getting prompt replies."""
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(8)
    flood_replies = []

    async def flood():
        for _ in range(120):
            flood_replies.append(await vfs[0].request(Opcode.GET_QUEUES))

    latencies = []

    async def polite(vf):
        for _ in range(6):
            t0 = get_sim_time("ns")
            assert (await vf.request(Opcode.GET_QUEUES)).ack
            latencies.append(get_sim_time("ns") - t0)
            await Timer(50, "us")

    flooder = cocotb.start_soon(flood())
    await gather(*(polite(vf) for vf in vfs[1:]))
    await flooder
    limited = sum(1 for r in flood_replies if r.nack and r.payload[0] == MbxError.RATE_LIMITED)
    assert limited > 0, "the flood was never rate limited"
    assert sys_.pf.vf_info(0).rate_limited == limited
    assert all(sys_.pf.vf_info(i).rate_limited == 0 for i in range(1, 8))
    assert max(latencies) < mbx.MBX_TIMEOUT_NS / 4, f"a polite VF waited {max(latencies)} ns"


async def chatter(vf, stop, counts):
    """Background mailbox traffic of one VF: count successful exchanges."""
    while not stop():
        reply = await vf.request(Opcode.GET_QUEUES)
        assert reply.ack, f"VF {vf.vf_index} got {reply}"
        counts[vf.vf_index] = counts.get(vf.vf_index, 0) + 1
        await Timer(1, "ms")


@cocotb.test()
async def flr_of_one_vf_leaves_others_untouched(dut):
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(4)
    for vf in vfs:
        sys_.pf.set_vf_trust(vf.vf_index, True)
        assert (await vf.request(Opcode.SET_VLAN, [mbx.VLAN_ADD.put(10 + vf.vf_index, 1)])).ack
    done = False
    counts = {}
    tasks = [cocotb.start_soon(chatter(vf, lambda: done, counts)) for vf in vfs if vf.vf_index != 2]
    await Timer(3, "ms")
    before = dict(counts)
    await pcicore.pcie_flr(vfs[2].pdev)
    await expect_within(lambda: sys_.pf.vf_info(2).state is VfState.NOT_RESET)
    assert sys_.pf.vf_info(2).vlans == set()
    await Timer(3, "ms")
    done = True
    for t in tasks:
        await t
    for i in (0, 1, 3):
        assert counts[i] > before[i], f"VF {i} stalled during VF 2's FLR"
        assert sys_.pf.vf_info(i).vlans == {10 + i} and sys_.pf.vf_info(i).state is VfState.CTS
    # VF 2 comes back with a fresh probe
    vfs[2].pdev.msix_enabled = False
    await vfs[2].probe()
    assert vfs[2].ready and sys_.pf.vf_info(2).state is VfState.CTS


@cocotb.test()
async def pf_reset_and_recovery_of_all_vfs(dut):
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(8)
    macs = [vf.mac for vf in vfs]
    await sys_.pf.reset()
    await expect_within(lambda: all(vf.ready and vf.resets == 1 for vf in vfs))
    assert [vf.mac for vf in vfs] == macs
    assert all(sys_.pf.vf_info(i).state is VfState.CTS for i in range(8))
    for vf in vfs:
        assert (await vf.request(Opcode.GET_QUEUES)).ack


@cocotb.test()
async def sriov_disable_mid_conversation(dut):
    """sriov_configure(0) while VFs talk: their requests fail cleanly, the PF carries on."""
    sys_ = await build_system(dut, total_vfs=8)
    vfs = await sys_.enable_vfs(4)
    outcome = {}

    async def talk(vf):
        try:
            while True:
                await vf.request(Opcode.GET_QUEUES)
                await Timer(20, "us")
        except MailboxTimeout as exc:
            outcome[vf.vf_index] = type(exc).__name__

    tasks = [cocotb.start_soon(talk(vf)) for vf in vfs]
    await Timer(200, "us")
    await sys_.pf.sriov_configure(0)
    await select(gather(*tasks), Timer(100, "ms"))
    assert sorted(outcome) == [0, 1, 2, 3], f"VF requests hung: {outcome}"
    assert await sys_.pf.read_reg(regs.NIC_ID) == device.NIC_ID_MAGIC
    vfs = await sys_.enable_vfs(2)
    assert all(vf.ready for vf in vfs)
