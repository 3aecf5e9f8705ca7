"""Fairness under a flood (docs/security.md): two VFs post thousands of TX descriptors with one
tail write on each of their queues (twice as many busy rings as DMA engines) and one of them
keeps its RX ring full from the uplink; a victim VF's
frames and mailbox requests still complete within stated bounds, in engine turns and in
simulated time, and the flooding queues' interrupts keep coming at the moderation rate.

These checks fail when the per-turn bound (QUEUE_BUDGET) or the round-robin of the DMA engines
is taken out of model/scheduler.py or model/queues.py.

The flood must last in simulated time while the victim works, which needs DMA that takes
time: the test runs on the TLP fabric whatever ``$FABRIC`` says (on the transaction-level
fabric the whole flood completes at the instant it is rung), and, being long there, in the
regression (``NIC_SLOW_TESTS=1``); ``tests/test_scheduler.py`` checks the same round-robin
bound in ``make test``.
"""

import collections

import cocotb
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

from datasheet import descriptors as d
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import Opcode
from fabric import TLP
from model import events as ev
from tb.lib.system import SLOW_TESTS
from tb.tests.test_datapath import frame, up

PARTNER = bytes.fromhex("00163e000001")
UNKNOWN = bytes.fromhex("00163e0000ee")
FLOOD_QUEUES = tuple(range(device.VF_QUEUE_PAIRS))
FLOOD_DESCS = 2048
FLOOD_EITR_US = 20
VICTIM_FRAMES = 12
#: the victim's frame reaches its peer within this much simulated time under the flood (measured
#: 7-10 us on the TLP fabric: it waits for about one turn of QUEUE_BUDGET descriptors per engine)
VICTIM_LATENCY_NS = 30_000
#: and a mailbox request completes within a quarter of the protocol's timeout
MAILBOX_LATENCY_NS = mbx.MBX_TIMEOUT_NS // 4


def now() -> float:
    return get_sim_time("ns")


async def flood_queue(vf, queue: int, size: int, payload: bytes) -> None:
    """Reprogram TX ``queue`` of ``vf`` (as a hostile guest may) with a ring of ``size``
    descriptors that all send ``payload``, and hand all but one over with one tail write."""
    ring, ring_iova = vf.dma.dma_alloc_coherent(size * d.DESC_SIZE)
    data, data_iova = vf.dma.dma_alloc_coherent(len(payload))
    data.write(0, payload)
    ring.write(0, d.tx_desc(data_iova, len(payload)) * size)
    vector = vf.netdev.first_vector + queue
    await vf.write_reg(regs.EITR, FLOOD_EITR_US, vector)
    await vf.write_reg(regs.TXDCTL, 0, queue)
    await vf.write_reg(regs.TDBAL, ring_iova & 0xFFFFFFFF, queue)
    await vf.write_reg(regs.TDBAH, ring_iova >> 32, queue)
    await vf.write_reg(regs.TDLEN, size, queue)
    await vf.write_reg(regs.TXDCTL, regs.TXDCTL.field("VECTOR").put(1, vector), queue)
    await vf.write_reg(regs.TDT, size - 1, queue)


@cocotb.test(skip=not SLOW_TESTS)
async def flood_does_not_starve_a_victim(dut):
    sys_, vfs = await up(dut, num_vfs=4, fabric=TLP)
    flooder, victim, peer, flooder2 = vfs
    events = sys_.nic.events
    turns: list[ev.Turn] = []
    doorbells: list[ev.Doorbell] = []
    irqs = collections.defaultdict(list)
    events.subscribe(ev.Turn, turns.append)
    events.subscribe(ev.Doorbell, doorbells.append)
    flooder_fn = device.vf_port(flooder.vf_index)
    flooders = {flooder_fn, device.vf_port(flooder2.vf_index)}
    events.subscribe(ev.Interrupt, lambda e: e.fn == flooder_fn and irqs[e.vector].append(now()))

    for vf in (flooder, flooder2):
        for q in FLOOD_QUEUES:
            await flood_queue(vf, q, FLOOD_DESCS, frame(vf.mac, UNKNOWN, q, 60))
    flood_start = now()
    stop = []

    async def fill_rx():
        n = 0
        while not stop:
            await sys_.nic.uplink.send(frame(PARTNER, flooder.mac, n, 60))
            n += 1

    rx_flood = cocotb.start_soon(fill_rx())
    await Timer(20, "us")  # the flood is in full swing

    victim_fn = device.vf_port(victim.vf_index)
    latencies, mailbox = [], []
    for n in range(VICTIM_FRAMES):
        pkt = frame(victim.mac, peer.mac, 500 + n)
        sent = now()
        assert await victim.start_xmit(pkt)
        assert (await peer.netdev.recv())[1] == pkt
        latencies.append(now() - sent)
        if n % 4 == 0:
            t0 = now()
            assert (await victim.request(Opcode.GET_QUEUES)).ack
            mailbox.append(now() - t0)
        await Timer(5, "us")
    flood_turns = [t for t in turns if t.fn in flooders and not t.rx]
    still_flooding = sum(t.descriptors for t in flood_turns) < 2 * len(FLOOD_QUEUES) * (FLOOD_DESCS - 1)
    stop.append(True)
    await rx_flood

    # 1. no turn handles more than QUEUE_BUDGET descriptors
    assert flood_turns and max(t.descriptors for t in flood_turns) <= device.QUEUE_BUDGET
    # 2. round-robin: once the victim's doorbell arrived, no other ring started more than one
    #    turn before the victim's next turn started
    victim_turns = sorted(t.number for t in turns if t.fn == victim_fn and not t.rx)
    waited = []
    for bell in (b for b in doorbells if b.fn == victim_fn and not b.rx):
        served = next(t for t in victim_turns if t > bell.turns)
        ahead = collections.Counter((t.fn, t.queue, t.rx) for t in turns if bell.turns < t.number < served)
        assert max(ahead.values(), default=0) <= 1, f"rings served twice ahead of the victim: {ahead}"
        waited.append(sum(ahead.values()))
    assert max(waited) >= device.DMA_ENGINES, f"the engines were never all busy (turns waited {waited})"
    # 3. simulated time
    assert max(latencies) <= VICTIM_LATENCY_NS, f"victim latencies (ns) {latencies}"
    assert max(mailbox) <= MAILBOX_LATENCY_NS, f"mailbox latencies (ns) {mailbox}"
    # 4. the flooding queues' interrupts keep coming, no faster than EITR allows
    window = now() - flood_start
    for q in FLOOD_QUEUES:
        times = irqs[flooder.netdev.first_vector + q]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) >= window / (FLOOD_EITR_US * 1000) / 2, f"queue {q}: {len(times)} interrupts"
        assert min(gaps) >= FLOOD_EITR_US * 1000, f"queue {q}: interrupts {min(gaps)} ns apart"
    assert still_flooding, "the flood ended before the victim was done: make it longer"
    cocotb.log.info(
        "victim latency %.0f..%.0f ns, waited %s turns, mailbox %.0f ns, %d flood turns (max %d descriptors)",
        min(latencies),
        max(latencies),
        waited,
        max(mailbox),
        len(flood_turns),
        max(t.descriptors for t in flood_turns),
    )
