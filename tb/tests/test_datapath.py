"""Per-VF datapath with the IOMMU on: rings, doorbells, MSI-X, embedded switch, uplink."""

import cocotb
from cocotb.triggers import Timer, gather
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from datasheet import descriptors as d
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import QueueError
from datasheet.mailbox import Opcode
from iommu.events import Translation
from model import events as ev
from netdev.ring import FRAME_SLOTS, TX_MAP_CHUNK
from tb.lib.system import build_system
from tb.lib.timing import expect_within

BCAST = "ff:ff:ff:ff:ff:ff"
GROUP = "01:00:5e:00:00:07"


def mac(b: bytes) -> str:
    return mbx.mac_str(b)


def frame(src: bytes, dst, n: int = 0, size: int = 64) -> bytes:
    """A UDP frame of ``size`` bytes (without FCS) whose payload carries ``n``."""
    pkt = (
        Ether(src=mac(src), dst=dst if isinstance(dst, str) else mac(dst))
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=1000 + n % 1000, dport=2000)
    )
    pad = max(size - len(pkt) - 4, 0)
    return bytes(pkt / (n.to_bytes(4, "big") + bytes(pad)))


async def recv(dev, timeout_us=200):
    """Next frame a net device received within ``timeout_us``, or None."""
    for _ in range(timeout_us):
        if not dev.received.empty():
            return dev.received.get_nowait()[1]
        await Timer(1, "us")
    return None


async def up(dut, num_vfs=4, ring_size=64, open_pf=False, **kw):
    sys_ = await build_system(dut, total_vfs=max(num_vfs, 4), iommu=True, **kw)
    vfs = await sys_.enable_vfs(num_vfs)
    for vf in vfs:
        sys_.attach_vf_domain(vf)
        await vf.open(ring_size)
    if open_pf:
        await sys_.pf.open(ring_size)
    return sys_, vfs


async def sw_stat(sys_, name):
    return await sys_.pf.read_reg(regs.by_name(f"SW_{name}"))


async def stat(drv, name):
    return await drv.read_reg(regs.by_name(f"STAT_{name}"))


@cocotb.test()
async def vf_to_vf_inside_the_nic(dut):
    """VF0 -> VF1 byte-exact, never on the uplink; counters on both sides and in the PF's view."""
    sys_, vfs = await up(dut)
    pkt = frame(vfs[0].mac, vfs[1].mac, 1, 200)
    assert await vfs[0].start_xmit(pkt)
    assert await recv(vfs[1].netdev) == pkt
    assert await sys_.nic.uplink.recv(timeout_ns=20_000) is None
    assert await sw_stat(sys_, "UNICAST_INTERNAL") == 1 and await sw_stat(sys_, "TO_UPLINK") == 0
    assert await stat(vfs[0], "TX_PACKETS") == 1 and await stat(vfs[0], "TX_BYTES") == len(pkt)
    assert await stat(vfs[1], "RX_PACKETS") == 1 and await stat(vfs[1], "RX_BYTES") == len(pkt)
    base = 1 * len(regs.STATS)  # VF 1's counters in the PF's BAR0
    assert await sys_.pf.read_reg(regs.PF_VF_STATS, base + 4) == 1
    assert vfs[0].netdev.stats(0, "tx").packets == 1 and vfs[1].netdev.stats(0, "rx").bytes == len(pkt)
    assert sys_.iommu_driver.iommu.faults.total == 0


@cocotb.test()
async def vf_to_uplink_and_uplink_to_vf(dut):
    sys_, vfs = await up(dut)
    out = frame(vfs[2].mac, bytes.fromhex("00163e000001"), 2, 1500)
    assert await vfs[2].start_xmit(out)
    assert await sys_.nic.uplink.recv(timeout_ns=200_000) == out
    inbound = frame(bytes.fromhex("00163e000001"), vfs[3].mac, 3, 1500)
    await sys_.nic.uplink.send(inbound)
    assert await recv(vfs[3].netdev) == inbound
    for other in vfs[:3]:
        assert await recv(other.netdev, 20) is None


@cocotb.test()
async def broadcast_and_multicast_filtering(dut):
    sys_, vfs = await up(dut, open_pf=True)
    pkt = frame(vfs[0].mac, BCAST, 4)
    assert await vfs[0].start_xmit(pkt)
    for dev in [vf.netdev for vf in vfs[1:]] + [sys_.pf.netdev]:
        assert await recv(dev) == pkt
    assert await recv(vfs[0].netdev, 20) is None  # not back to the sender
    assert await sys_.nic.uplink.recv(timeout_ns=50_000) == pkt
    group = bytes.fromhex(GROUP.replace(":", ""))
    assert (await vfs[2].request(Opcode.SET_MULTICAST, [1] + mbx.mac_to_words(group))).ack
    pkt = frame(vfs[0].mac, GROUP, 5)
    assert await vfs[0].start_xmit(pkt)
    assert await recv(vfs[2].netdev) == pkt
    for dev in (vfs[1].netdev, vfs[3].netdev, sys_.pf.netdev):
        assert await recv(dev, 20) is None
    assert await sw_stat(sys_, "BROADCAST") == 1 and await sw_stat(sys_, "MULTICAST") == 1


@cocotb.test()
async def spoofed_source_dropped_and_counted(dut):
    sys_, vfs = await up(dut)
    spoofed = frame(vfs[1].mac, vfs[2].mac, 6)  # VF0 pretends to be VF1
    assert await vfs[0].start_xmit(spoofed)
    assert await recv(vfs[2].netdev, 50) is None
    assert await sw_stat(sys_, "DROP_SPOOF") == 1 and await stat(vfs[0], "TX_DROPS") == 1
    await Timer(20, "us")
    vfs[0].netdev.tx[0].clean(64)
    assert vfs[0].netdev.stats(0, "tx").dropped == 1
    await sys_.pf.set_vf_spoofchk(0, False)
    assert await vfs[0].start_xmit(spoofed)
    assert await recv(vfs[2].netdev) == spoofed


@cocotb.test()
async def ring_wraps_over_many_laps(dut):
    sys_, vfs = await up(dut, num_vfs=2, ring_size=16)
    sent = [frame(vfs[0].mac, vfs[1].mac, n, 64 + n % 64) for n in range(100)]
    for pkt in sent:
        while not await vfs[0].start_xmit(pkt):
            await Timer(2, "us")
    got = [await recv(vfs[1].netdev) for _ in sent]
    assert got == sent
    assert vfs[0].netdev.tx[0].next_to_use == 100 % 16


@cocotb.test()
async def rx_ring_exhaustion_drops_and_counts(dut):
    sys_, vfs = await up(dut, num_vfs=2, ring_size=16)
    vfs[1].netdev.napi_disable(0)  # nobody refills VF1's ring
    for n in range(40):
        await sys_.nic.uplink.send(frame(bytes.fromhex("00163e000009"), vfs[1].mac, n))
    await Timer(100, "us")
    nobuf = await vfs[1].read_reg(regs.QRX_NOBUF, 0)
    assert nobuf == 40 - 15  # 15 buffers posted in a 16-slot ring
    assert await stat(vfs[1], "RX_DROPS") == nobuf
    vfs[1].netdev.napi_enable(0)
    got = [await recv(vfs[1].netdev) for _ in range(15)]
    assert [int.from_bytes(g[42:46], "big") for g in got] == list(range(15))


async def traffic_ok(vfs, n=0):
    """VF2 -> VF3 still works."""
    pkt = frame(vfs[2].mac, vfs[3].mac, 900 + n)
    assert await vfs[2].start_xmit(pkt)
    assert await recv(vfs[3].netdev) == pkt


async def raw_tx(vf, descs):
    """Write raw descriptors into VF's TX ring 0 and ring the doorbell (a hand-made driver)."""
    ring = vf.netdev.tx[0]
    await ring.post_raw(descs)
    return ring


@cocotb.test()
async def bad_descriptors_and_doorbells(dut):
    """Each bad input has its stated outcome, and the other VFs' traffic keeps flowing."""
    sys_, vfs = await up(dut)
    vf = vfs[0]
    ring = vf.netdev.tx[0]
    # zero-length and oversized descriptors: completed with ERR_LEN, nothing sent
    await raw_tx(vf, [d.tx_desc(ring.data_iova, 0), d.tx_desc(ring.data_iova, device.MAX_FRAME + 1)])
    vf.netdev.napi_disable(0)  # keep the write-backs in the ring to look at them
    await Timer(20, "us")
    assert [ring.slot_status(i)[1] for i in (0, 1)] == [d.STATUS_DD.mask | d.STATUS_ERR_LEN.mask] * 2
    assert await stat(vf, "TX_ERRORS") == 2 and await sw_stat(sys_, "TO_UPLINK") == 0
    vf.netdev.napi_enable(0)
    await Timer(20, "us")
    assert vf.netdev.stats(0, "tx").errors == 2 and ring.next_to_clean == 2
    await traffic_ok(vfs, 1)
    # a buffer address the IOMMU does not map: the queue stops with DMA_FAULT, irq to the driver
    irqs = vf.netdev.polls[0]
    await raw_tx(vf, [d.tx_desc(0x7F00_0000, 64)])
    await Timer(20, "us")
    ctl = await vf.read_reg(regs.TXDCTL, 0)
    assert regs.TXDCTL.field("ERR").get(ctl) == QueueError.DMA_FAULT and not ctl & 1
    fault = sys_.iommu_driver.iommu.faults.records[-1]
    assert fault.source_id == int(vf.pdev.pcie_id) and fault.address == 0x7F00_0000 and not fault.is_write
    assert vf.netdev.polls[0] > irqs  # the driver was interrupted
    assert vf.netdev.stats(0, "tx").errors == 3  # its descriptor came back DD | ERR_DMA
    await traffic_ok(vfs, 2)
    # a doorbell on the (now disabled) queue: ignored, counted
    before = await vf.read_reg(regs.QERR_COUNT, 0)
    await vf.write_reg(regs.TDT, 3, 0)
    assert await vf.read_reg(regs.QERR_COUNT, 0) == before + 1
    # queue 1: tail beyond the ring stops it with BAD_TAIL
    await vf.write_reg(regs.TDT, 10_000, 1)
    assert regs.TXDCTL.field("ERR").get(await vf.read_reg(regs.TXDCTL, 1)) == QueueError.BAD_TAIL
    # queue 2: a misaligned ring base is refused at enable
    await vf.write_reg(regs.TXDCTL, 0, 2)
    await vf.write_reg(regs.TDBAL, ring.desc_iova + 8, 2)
    await vf.write_reg(regs.TXDCTL, 1, 2)
    ctl = await vf.read_reg(regs.TXDCTL, 2)
    assert not ctl & 1 and regs.TXDCTL.field("ERR").get(ctl) == QueueError.BAD_RING
    # queue 5 does not exist in a VF: unimplemented
    assert await vf.read_reg(regs.TXDCTL, device.VF_QUEUE_PAIRS + 1) == 0
    assert regs.ERR_STATUS.field("UNIMPL").get(await vf.read_reg(regs.ERR_STATUS))
    await traffic_ok(vfs, 3)
    for other in vfs[1:]:
        assert regs.TXDCTL.field("ERR").get(await other.read_reg(regs.TXDCTL, 0)) == 0


@cocotb.test()
async def writebacks_batched_in_order_and_kept_across_a_fault(dut):
    """One doorbell for a burst: the engine writes its descriptors back in order, at most
    ``WB_BATCH`` per DMA write, all before the interrupt.  A buffer that faults mid-burst stops
    the queue, but the frames completed before it in the same turn are still written back."""
    sys_, vfs = await up(dut)
    vf, peer = vfs[0], vfs[1]
    ring = vf.netdev.tx[0]
    span = (ring.desc_iova, ring.desc_iova + ring.size * d.DESC_SIZE)
    writes = []
    sys_.rc.iommu.events.subscribe(
        Translation,
        lambda t: t.is_write and span[0] <= t.iova < span[1] and writes.append((t.iova - span[0], t.length)),
    )

    def post(frames, bad_at=None):
        first = ring.next_to_use
        descs = []
        for k, pkt in enumerate(frames):
            slot = (first + k) % ring.size
            ring.data.write(slot * ring.buf_size, pkt)
            addr = 0x7F00_0000 if k == bad_at else ring.data_iova + slot * ring.buf_size
            descs.append(d.tx_desc(addr, len(pkt), True))
        return first, descs

    vf.netdev.napi_disable(0)  # keep the write-backs in the ring to look at them
    burst = [frame(vf.mac, peer.mac, n) for n in range(2 * device.WB_BATCH + 3)]
    first, descs = post(burst)
    await ring.post_raw(descs)
    await Timer(50, "us")
    assert [ring.slot_status(first + k)[1] for k in range(len(burst))] == [d.STATUS_DD.mask] * len(burst)
    assert all(length <= device.WB_BATCH * d.DESC_SIZE for _, length in writes)
    assert [off for off, _ in writes] == [(first + k) * d.DESC_SIZE for k in range(0, len(burst), device.WB_BATCH)]
    assert sum(length for _, length in writes) == len(burst) * d.DESC_SIZE
    assert [await recv(peer.netdev) for _ in burst] == burst
    # a fault after three good frames: they are written back and delivered, the bad one is ERR_DMA
    writes.clear()
    good = 3
    burst = [frame(vf.mac, peer.mac, 100 + n) for n in range(good + 2)]
    first, descs = post(burst, bad_at=good)
    await ring.post_raw(descs)
    await Timer(50, "us")
    status = [ring.slot_status(first + k)[1] for k in range(len(burst))]
    assert status == [d.STATUS_DD.mask] * good + [d.STATUS_DD.mask | d.STATUS_ERR_DMA.mask, 0]
    assert regs.TXDCTL.field("ERR").get(await vf.read_reg(regs.TXDCTL, 0)) == QueueError.DMA_FAULT
    assert [await recv(peer.netdev) for _ in range(good)] == burst[:good]
    assert await recv(peer.netdev, 20) is None


@cocotb.test()
async def eight_vfs_send_concurrently(dut):
    sys_, vfs = await up(dut, num_vfs=8)
    per_vf = 12

    async def send(i):
        dst = vfs[(i + 1) % 8]
        for n in range(per_vf):
            while not await vfs[i].start_xmit(frame(vfs[i].mac, dst.mac, i * 100 + n)):
                await Timer(1, "us")

    await gather(*(send(i) for i in range(8)))
    for i in range(8):
        src = vfs[(i - 1) % 8]
        got = [await recv(vfs[i].netdev) for _ in range(per_vf)]
        assert got == [frame(src.mac, vfs[i].mac, src.vf_index * 100 + n) for n in range(per_vf)]
    assert await sw_stat(sys_, "UNICAST_INTERNAL") == 8 * per_vf


@cocotb.test()
async def concurrent_xmit_on_one_queue(dut):
    """Several coroutines calling start_xmit on one ring: every frame arrives exactly once."""
    sys_, vfs = await up(dut, num_vfs=2, ring_size=32)

    async def sender(k):
        for n in range(15):
            while not await vfs[0].start_xmit(frame(vfs[0].mac, vfs[1].mac, k * 1000 + n)):
                await Timer(1, "us")

    await gather(*(sender(k) for k in range(4)))
    got = [await recv(vfs[1].netdev) for _ in range(60)]
    ids = sorted(int.from_bytes(g[42:46], "big") for g in got)
    assert ids == sorted(k * 1000 + n for k in range(4) for n in range(15))
    assert await recv(vfs[1].netdev, 30) is None


@cocotb.test()
async def xmit_more_defers_the_doorbell_to_the_last_frame_of_a_batch(dut):
    """``start_xmit(more=True)`` (``netdev_xmit_more()``): frames wait in the ring, unseen by the
    device, until a frame without ``more`` rings once for all of them; a ring that might not
    take the largest frame next rings at once; a frame refused for want of slots (one of more
    than ``FRAME_SLOTS`` pieces) rings for the frames waiting before it."""
    sys_, vfs = await up(dut, num_vfs=2, ring_size=32)
    src, dst = vfs
    ring = src.netdev.tx[0]
    tx_fn = device.vf_port(src.vf_index)
    doorbells = []
    sys_.nic.events.subscribe(ev.Doorbell, lambda e: e.fn == tx_fn and not e.rx and doorbells.append(e.tail))

    def cleaned():  # the driver reclaimed every descriptor: all slots free
        return expect_within(lambda: ring.free() == ring.size - 1, timeout_ns=200_000, step_ns=1_000)

    batch = [frame(src.mac, dst.mac, n) for n in range(5)]
    for pkt in batch[:-1]:
        assert await src.start_xmit(pkt, more=True)
    assert await recv(dst.netdev, 50) is None and doorbells == []  # not the device's yet
    assert await src.start_xmit(batch[-1])
    assert [await recv(dst.netdev) for _ in batch] == batch
    assert doorbells == [5]

    await cleaned()
    sent = []
    while ring.tail == 5:  # room for the largest frame after each: nothing rings
        assert ring.free() >= FRAME_SLOTS
        sent.append(frame(src.mac, dst.mac, 100 + len(sent)))
        assert await src.start_xmit(sent[-1], more=True)
    assert ring.free() < FRAME_SLOTS and ring.tail == ring.next_to_use
    assert [await recv(dst.netdev) for _ in sent] == sent
    assert doorbells == [5, 5 + len(sent)]

    await cleaned()
    waiting = [frame(src.mac, dst.mac, 200 + n) for n in range(4)]
    for pkt in waiting:
        assert await src.start_xmit(pkt, more=True)
    assert ring.tail != ring.next_to_use
    too_many = bytes(TX_MAP_CHUNK * ring.size)  # a piece for every slot and more: it never fits
    assert not await src.start_xmit(too_many, more=True)
    assert ring.tail == ring.next_to_use
    assert [await recv(dst.netdev) for _ in waiting] == waiting
    assert await recv(dst.netdev, 30) is None
    assert sys_.iommu_driver.iommu.faults.total == 0


@cocotb.test()
async def completion_racing_interrupt_reenable_is_not_lost(dut):
    """A frame that lands between napi_complete and the unmask is still received."""
    sys_, vfs = await up(dut, num_vfs=2)
    raced = []

    async def race(q):
        if not raced:
            raced.append(frame(bytes.fromhex("00163e0000aa"), vfs[1].mac, 77))
            await sys_.nic.uplink.send(raced[0])
            await Timer(5, "us")  # the device writes it back and signals a masked vector

    vfs[1].netdev.on_before_unmask(race)
    first = frame(vfs[0].mac, vfs[1].mac, 76)
    assert await vfs[0].start_xmit(first)
    assert await recv(vfs[1].netdev) == first
    assert await recv(vfs[1].netdev) == raced[0]
    assert vfs[1].netdev.reschedules[0] >= 1 or sys_.nic.vfs[1].slice.msix.sent[1] >= 2


@cocotb.test()
async def interrupt_moderation_coalesces(dut):
    sys_, vfs = await up(dut, num_vfs=2)
    engine = sys_.nic.vfs[1].slice.queues
    await vfs[1].write_reg(regs.EITR, 50, 1)  # RX0's vector: at most one per 50 us
    before = engine.irqs_raised[1]
    for n in range(20):
        await sys_.nic.uplink.send(frame(bytes.fromhex("00163e000001"), vfs[1].mac, n))
    got = [await recv(vfs[1].netdev) for _ in range(20)]
    assert len(got) == 20
    raised = engine.irqs_raised[1] - before
    assert 1 <= raised < 10, f"{raised} interrupts for 20 frames with EITR=50us"


@cocotb.test()
async def jumbo_frame_spans_descriptors_both_ways(dut):
    """A 9000-byte frame: five TX buffers chained to EOP, five RX buffers reassembled byte-exact."""
    sys_, vfs = await up(dut, num_vfs=2)
    pkt = frame(vfs[0].mac, vfs[1].mac, 42, 9000)
    assert await vfs[0].start_xmit(pkt)
    assert await recv(vfs[1].netdev) == pkt
    assert vfs[0].netdev.tx[0].next_to_use == 5 and vfs[1].netdev.rx[0].next_to_clean == 5
    assert await stat(vfs[1], "RX_BYTES") == len(pkt) and await stat(vfs[1], "RX_ERRORS") == 0
    too_big = frame(vfs[0].mac, vfs[1].mac, 43, device.MAX_FRAME + 100)
    assert await vfs[0].start_xmit(too_big)  # the device refuses it: ERR_LEN
    await Timer(50, "us")
    assert await recv(vfs[1].netdev, 20) is None and vfs[0].netdev.stats(0, "tx").errors == 1
