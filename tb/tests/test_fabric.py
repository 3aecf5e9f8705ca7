"""The fabrics themselves: idle TLP links sleep and still grant credits; the transaction-level
fabric issues the requests the TLP fabric would, carries device reads without TLPs with the
same completion faults, and still carries any other TLP."""

import random

import cocotb
from cocotb.triggers import NullTrigger, Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core.tlp import CplStatus, Tlp, TlpType

import fabric
import pcicore
from datasheet import pci
from fabric.link import TransmitQueue
from fabric.transaction import PAGE, in_window, read_requests, write_requests
from iommu import DMA_BIDIRECTIONAL, IOMMU_READ, IOMMU_WRITE
from iommu.events import Fault, Translation
from model import events as ev
from model.pcie.function import RequestFailed
from simtask import start_eagerly
from tb.lib.system import build_system
from tb.tests.test_aer import set_completion_timeout

TIMEOUT = dict(timeout=20, timeout_unit="us")
#: host physical address nothing decodes: above the MSI region, below the BAR windows
HOLE = 0x9000_0000


@cocotb.test()
async def idle_tlp_links_sleep_and_keep_granting_credits(dut):
    """On the TLP fabric an idle link does not wake every 10 us: over 10 ms with nothing but
    the PF driver's watchdog moving, each port's flow-control timer fires about once per
    watchdog read.  Traffic still flows (a 64 KiB DMA needs credits returned many times over)
    and afterwards every credit is back with the sender."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric.TLP)
    ports = (system.root_port.downstream_port, system.nic.device.upstream_port)
    await Timer(1, "ms")
    rounds, wakeups = system.pf.mailbox.rounds, [p.idle_wakeups for p in ports]
    await Timer(10, "ms")
    polls = system.pf.mailbox.rounds - rounds
    woke = [p.idle_wakeups - w for p, w in zip(ports, wakeups)]
    assert all(n <= 2 * (polls + 1) for n in woke), f"{woke} timer wake-ups in 10 ms, {polls} watchdog reads"
    buf = system.pf_dma.alloc_buffer(64 * 1024)
    data = bytes(k * 7 & 0xFF for k in range(64 * 1024))
    await system.nic.pf.dma_write(buf.phys, data)
    assert await system.nic.pf.dma_read(buf.phys, len(data)) == data
    await Timer(100, "us")
    for port in ports:
        assert not port.busy(), "the link still holds traffic"
        ch = port.other.fc_state[0]  # the sender's view of this port's credits
        for fc in (ch.ph, ch.pd, ch.nph, ch.npd, ch.cplh, ch.cpld):
            if not fc.tx_is_infinite():
                assert fc.tx_credits_available == fc.tx_initial_allocation, "credits not returned"


@cocotb.test()
async def a_sender_started_eagerly_keeps_its_turn_at_a_full_transmit_queue(dut):
    """A TLP sender started eagerly (an MSI-X message the model starts, a TLP the root
    complex's switch forwards in its sender's turn) runs in the task that started it; finding
    a link's transmit queue full, it still gets its turn when the transmitter takes a packet,
    after that task has ended (a cocotb ``Queue`` skips a waiter whose task ended: under a
    flood, interrupt messages were lost that way). A sender cancelled while it waits gives
    its turn to the next, in order."""
    queue = TransmitQueue(1)
    queue.put_nowait("first")

    async def caller():
        assert start_eagerly(queue.put("eager")), "the queue is full: the sender must wait"

    await cocotb.start_soon(caller())  # the eager sender's task has ended
    cancelled = cocotb.start_soon(queue.put("cancelled"))
    late = cocotb.start_soon(queue.put("late"))
    await NullTrigger()
    cancelled.cancel()
    sent = []
    for _ in range(3):
        sent.append(queue.get_nowait())
        await Timer(1, "ns")
    assert sent == ["first", "eager", "late"] and queue.empty()
    assert late.done() and cancelled.cancelled()


@cocotb.parametrize(fabric_name=list(fabric.FABRICS))
@cocotb.test()
async def dma_is_cut_into_the_same_requests_on_both_fabrics(dut, fabric_name):
    """A VF's 1500-byte read and 9000-byte write through its IOMMU domain reach the IOMMU
    as the requests Max_Read_Request_Size, Max_Payload_Size and 4 KiB boundaries make of
    them (on the TLP fabric, one per TLP), DWORD-aligned, in order."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric_name)
    (vf,) = await system.enable_vfs(1)
    dma = system.attach_vf_domain(vf)
    buf, iova = dma.dma_alloc_coherent(16 * 1024)
    seen = []
    system.rc.iommu.events.subscribe(Translation, lambda t: seen.append((t.iova, t.length, t.is_write)))
    fn = system.nic.vfs[0]
    cap = fn.pcie_cap
    data = bytes(range(256)) * 36
    await fn.dma_write(iova + 0x7FE, data[:9000])
    assert await fn.dma_read(iova + 0x7FE + 2, 1500) == data[2:1502]
    expected = [
        (addr & ~3, (((addr & 3) + n + 3) >> 2) << 2, True)
        for addr, n in write_requests(iova + 0x7FE, 9000, 128 << cap.max_payload_size)
    ] + [
        (addr & ~3, (((addr & 3) + n + 3) >> 2) << 2, False)
        for addr, n in read_requests(iova + 0x800, 1500, 128 << cap.max_read_request_size)
    ]
    assert seen == expected
    assert buf.read(0x7FE, 9000) == data[:9000]


@cocotb.parametrize(fabric_name=list(fabric.FABRICS), acs=[True, False])
@cocotb.test()
async def each_request_of_a_write_is_translated_and_faulted_on_its_own(dut, fabric_name, acs):
    """A VF write that runs from a page it may write into one mapped for it to read only
    (VT-d §3.6): the requests Max_Payload_Size cuts it into are each looked up in the IOTLB,
    those in the writable page land, and each one in the read-only page is blocked with a
    fault of its own, whether the root port redirects them (ACS) or routes them by address.
    The fast fabric hands the requests over as one burst; the outcome is the TLP fabric's."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric_name)
    (vf,) = await system.enable_vfs(1)
    if not acs:
        port = system.pf_dev.upstream_bridge()
        pos = await pcicore.find_ext_capability(port, pci.PCI_EXT_CAP_ID_ACS)
        await port.config_write_word(pos + pci.PCI_ACS_CTRL, 0)
    dma = system.attach_vf_domain(vf)
    pages = dma.alloc_buffer(2 * PAGE)
    iova = dma.dma_map(pages, 2 * PAGE, DMA_BIDIRECTIONAL)
    system.iommu_driver.iommu_unmap(dma.domain, iova + PAGE, PAGE)  # the second page: read only
    system.iommu_driver.iommu_map(dma.domain, iova + PAGE, pages.phys + PAGE, PAGE, IOMMU_READ)
    fn = system.nic.vfs[0]
    mps = 128 << fn.pcie_cap.max_payload_size
    start = iova + PAGE - 3 * mps - 6  # three requests and a bit in the writable page
    data = bytes(range(256)) * 4
    cut = list(write_requests(start, len(data), mps))
    refused = [addr for addr, _ in cut if addr >= iova + PAGE]
    assert 0 < len(refused) < len(cut)
    iommu = system.rc.iommu
    looked, faults = iommu.iotlb.hits + iommu.iotlb.misses, iommu.faults.total
    await fn.dma_write(start, data)
    await Timer(2, "us")  # posted: let them land
    landed = iova + PAGE - start
    assert pages.read(start - iova, landed) == data[:landed]
    assert pages.read(PAGE, PAGE) == bytes(PAGE)
    assert iommu.iotlb.hits + iommu.iotlb.misses - looked == len(cut)
    assert iommu.faults.total - faults == len(refused)
    assert [r.address for r in iommu.faults.records[-len(refused) :]] == [addr & ~3 for addr in refused]


@cocotb.parametrize(fabric_name=list(fabric.FABRICS))
@cocotb.test()
async def a_write_lands_and_counts_as_its_requests_once_translations_are_cached(dut, fabric_name):
    """A VF's 9000-byte write across three mapped pages, once their translations are cached:
    every byte lands, and each request Max_Payload_Size cuts it into is one context-cache and
    one IOTLB hit, no walk, no fault (the fast fabric writes such a page at once and counts its
    requests).  A write the VF aims at the interrupt window is an interrupt request per
    request, none of which names a vector: each is counted and faulted by interrupt remapping
    (on in the system), and nothing is written."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric_name)
    (vf,) = await system.enable_vfs(1)
    dma = system.attach_vf_domain(vf)
    buf, iova = dma.dma_alloc_coherent(4 * PAGE)
    fn = system.nic.vfs[0]
    mps = 128 << fn.pcie_cap.max_payload_size
    start, size = iova + 0x7FE, 9000
    await fn.dma_write(start, bytes(size))  # the walks: every page's translation cached
    await Timer(2, "us")
    iommu = system.rc.iommu
    hits, misses, ctx_hits = iommu.iotlb.hits, iommu.iotlb.misses, iommu.context_cache.hits
    walks, faults = iommu.iotlb.walks, iommu.faults.total
    data = bytes(k * 13 & 0xFF for k in range(size))
    await fn.dma_write(start, data)
    await Timer(2, "us")  # posted: let them land
    requests = len(list(write_requests(start, size, mps)))
    assert buf.read(0x7FE, size) == data
    assert (iommu.iotlb.hits - hits, iommu.iotlb.misses - misses) == (requests, 0)
    assert iommu.context_cache.hits - ctx_hits == requests
    assert (iommu.iotlb.walks, iommu.faults.total) == (walks, faults)
    window, _size = iommu.interrupt_window
    bogus, delivered = system.rc.msi_bogus, system.rc.msi_delivered
    await fn.dma_write(window + 0x1000, data[:1000])
    await Timer(2, "us")
    requests = len(list(write_requests(window + 0x1000, 1000, mps)))
    assert system.rc.msi_bogus - bogus == requests and system.rc.msi_delivered == delivered
    assert iommu.interrupts.enabled and iommu.faults.total - faults == requests  # remapping faults


@cocotb.parametrize(fabric_name=list(fabric.FABRICS))
@cocotb.test()
async def a_read_over_cached_pages_returns_its_bytes_and_counts_its_requests(dut, fabric_name):
    """A VF's 9000-byte read across three mapped pages, once their translations are cached:
    the bytes, and one context-cache and one IOTLB hit per request Max_Read_Request_Size cuts
    it into (the fast fabric serves such a read at once).  An armed completion fault still
    fails it (poisoned data), and a read reaching an unmapped page fails with one fault per
    request in that page."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric_name)
    (vf,) = await system.enable_vfs(1)
    dma = system.attach_vf_domain(vf)
    buf, iova = dma.dma_alloc_coherent(4 * PAGE)
    data = bytes(k * 7 & 0xFF for k in range(4 * PAGE))
    buf.write(0, data)
    fn = system.nic.vfs[0]
    mrrs = 128 << fn.pcie_cap.max_read_request_size
    start, size = iova + 0x7FE, 9000
    assert await fn.dma_read(start, size) == data[0x7FE : 0x7FE + size]  # the walks
    iommu = system.rc.iommu
    hits, misses, ctx_hits, walks = iommu.iotlb.hits, iommu.iotlb.misses, iommu.context_cache.hits, iommu.iotlb.walks
    assert await fn.dma_read(start, size) == data[0x7FE : 0x7FE + size]
    cut = list(read_requests(start, size, mrrs))
    assert (iommu.iotlb.hits - hits, iommu.iotlb.misses - misses) == (len(cut), 0)
    assert (iommu.context_cache.hits - ctx_hits, iommu.iotlb.walks) == (len(cut), walks)
    fault = system.rc.inject.poison_completion(fn.rid)
    try:
        await fn.dma_read(start, size)
        failed = None
    except RequestFailed as exc:
        failed = str(exc)
    assert fault.fired and failed == f"read at {start & ~3:#x}: poisoned completion"
    system.iommu_driver.iommu_unmap(dma.domain, iova + 2 * PAGE, PAGE)
    faults = iommu.faults.total
    try:
        await fn.dma_read(start, size)
        failed = None
    except RequestFailed as exc:
        failed = str(exc)
    unmapped = [addr for addr, _ in cut if addr >= iova + 2 * PAGE]
    assert failed is not None and iommu.faults.total - faults == len(unmapped)


@cocotb.test()
async def bursts_have_the_outcome_of_their_requests_one_by_one(dut):
    """The transaction-level fabric's bursts against its own one-by-one path, on random DMA.
    Two VFs get the same IOVA layout (pages mapped read-write, read-only or not at all) and
    the same random reads and writes: any offset and length, across pages, past the mapping;
    now and then a page remapped, and dirty tracking on for the second half. The first VF's
    run with the IOMMU's fast path on (cached translations, bursts), the second's with
    the fast path off (every request translated one by one, as a walk or an IOTLB look-up),
    every other operation with a watcher of translations.
    Each operation must end the same: the same data read or the same error, the same IOTLB,
    context-cache, walk and fault counts, the same faults (address, direction, reason), the
    same translations published (one per request), the same pages dirtied; and both VFs'
    pages end with the same bytes.
    (The interrupt window is left out: what a write there does depends on the requester's own
    remapping entries; `a_write_lands_and_counts_as_its_requests_once_translations_are_cached`
    covers it.)"""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric.FAST)
    vfs = await system.enable_vfs(2)
    drv, iommu = system.iommu_driver, system.rc.iommu
    pages, base = 8, 1 << 40  # an IOVA range no allocator hands out
    rng = random.Random(2026)
    perms = [rng.choice([IOMMU_READ | IOMMU_WRITE] * 3 + [IOMMU_READ, 0]) for _ in range(pages)]
    sides = []
    for k, vf in enumerate(vfs):
        dma = system.attach_vf_domain(vf)
        host = dma.alloc_buffer(pages * PAGE)
        for page, prot in enumerate(perms):
            if prot:
                drv.iommu_map(dma.domain, base + page * PAGE, host.phys + page * PAGE, PAGE, prot)
        sides.append((system.nic.vfs[k], dma.domain, host))
    host_of = {domain.did: host for _fn, domain, host in sides}
    faults = []  # every fault as its event tells it (the fault log itself fills up)
    iommu.events.subscribe(Fault, lambda f: faults.append((f.record.address, f.record.is_write, f.record.reason)))
    seen = []  # the translations published, while watched, host addresses relative to the VF's pages

    def counts() -> tuple:
        cc = iommu.context_cache
        return (iommu.iotlb.hits, iommu.iotlb.misses, iommu.iotlb.walks, cc.hits, cc.misses, iommu.faults.total)

    async def run(fn, domain, op, watched: bool) -> tuple:
        kind, where, length, data, remap = op
        if remap is not None:  # the host changes one page's rights (the IOTLB entry invalidated)
            k, prot = remap
            drv.iommu_unmap(domain, base + k * PAGE, PAGE)
            if prot:
                drv.iommu_map(domain, base + k * PAGE, host_of[domain.did].phys + k * PAGE, PAGE, prot)
        before = counts()
        faults.clear()
        seen.clear()
        host = host_of[domain.did].phys
        unwatch = (
            iommu.events.subscribe(
                Translation, lambda t: seen.append((t.iova, t.length, t.is_write, t.phys and t.phys - host))
            )
            if watched
            else None
        )
        try:
            result = await fn.dma_read(where, length) if kind == "read" else await fn.dma_write(where, data)
        except RequestFailed as exc:
            result = str(exc)
        if unwatch:
            unwatch()
        delta = tuple(b - a for a, b in zip(before, counts()))
        dirty = drv.iommu_read_and_clear_dirty(domain, base, pages * PAGE) if domain.dirty_tracking else None
        return result, delta, list(faults), list(seen), dirty

    ops = []
    for _ in range(300):
        kind = rng.choice(["read", "write"])
        page = rng.randrange(pages)
        where = base + page * PAGE + rng.choice([0, 2, rng.randrange(PAGE), PAGE - rng.randrange(1, 700)])
        length = rng.choice([4, 64, 600, 1514, 2048, 5000, rng.randrange(1, 3 * PAGE)])
        data = rng.randbytes(length)
        remap = (
            (rng.randrange(pages), rng.choice([0, IOMMU_READ, IOMMU_READ | IOMMU_WRITE]))
            if rng.random() < 0.05
            else None
        )
        ops.append((kind, where, length, data, remap))
    for i, op in enumerate(ops):
        if i == len(ops) // 2:  # dirty tracking on from here: a write through a clean leaf sets D
            for _fn, domain, _host in sides:
                drv.set_dirty_tracking(domain, True)
        watched = i % 2 == 1
        bursts = await run(sides[0][0], sides[0][1], op, watched)
        iommu.set_fast_path(False)
        one_by_one = await run(sides[1][0], sides[1][1], op, watched)
        iommu.set_fast_path(True)
        assert bursts == one_by_one, f"operation {i} ({op[0]} of {op[2]} bytes at {op[1]:#x}): {bursts} != {one_by_one}"
    assert sides[0][2].read(0, pages * PAGE) == sides[1][2].read(0, pages * PAGE)


@cocotb.test()
async def any_tlp_still_crosses_the_fast_fabric(dut):
    """Requests the transaction-level fabric does not model as calls still travel as TLPs
    (the direct link): a raw memory read a function builds itself completes, a raw posted
    write lands, a raw configuration read from the root complex completes; an unclaimed read
    completes with Unsupported Request."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric.FAST)
    fn = system.nic.pf
    buf = system.pf_dma.alloc_buffer(4096)
    buf.write(0, b"read by a raw TLP")
    write = Tlp()
    write.fmt_type = TlpType.MEM_WRITE
    write.requester_id = fn.pcie_id
    write.set_addr_be_data(buf.phys + 64, b"written by a raw TLP")
    await fn.perform_posted_operation(write)
    read = Tlp()
    read.fmt_type = TlpType.MEM_READ
    read.requester_id = fn.pcie_id
    read.set_addr_be(buf.phys, 17)
    (cpl,) = await fn.perform_nonposted_operation(read, **TIMEOUT)
    assert cpl.status == CplStatus.SC and bytes(cpl.get_data())[:17] == b"read by a raw TLP"
    assert buf.read(64, 20) == b"written by a raw TLP"  # the write went first: posted order
    cfg = Tlp()
    cfg.fmt_type = TlpType.CFG_READ_1
    cfg.requester_id = system.rc.pcie_id
    cfg.completer_id = fn.pcie_id
    cfg.set_addr_be(0, 4)
    (cpl,) = await system.rc.perform_nonposted_operation(cfg, **TIMEOUT)
    assert cpl.status == CplStatus.SC and int.from_bytes(cpl.get_data()[:4], "little") & 0xFFFF == fn.vendor_id
    stray = Tlp()
    stray.fmt_type = TlpType.MEM_READ
    stray.requester_id = fn.pcie_id
    stray.set_addr_be(HOLE, 4)
    (cpl,) = await fn.perform_nonposted_operation(stray, **TIMEOUT)
    assert cpl.status == CplStatus.UR
    assert system.root_port.downstream_port.delivered >= 3  # completions came down the link


@cocotb.parametrize(fabric_name=list(fabric.FABRICS))
@cocotb.test()
async def device_reads_and_their_completion_faults_on_both_fabrics(dut, fabric_name):
    """A device DMA read: on the transaction-level fabric no TLP carries it.  A read the
    root complex never completes fails after the function's Completion Timeout (100 us,
    PCIe 6.0 §2.8) with its request's header logged and no completion status noted; one
    completed late, past the timeout, fails the same way and its completion is then
    Unexpected (§6.2.3.2.4.1); poisoned data fails the read (Poisoned TLP Received)."""
    system = await build_system(dut, total_vfs=4, iommu=True, fabric=fabric_name)
    fn = system.nic.pf
    buf = system.pf_dma.alloc_buffer(4096)
    buf.write(0, b"read by the device")
    link = system.root_port.downstream_port
    crossed = getattr(link, "delivered", None)
    assert await fn.dma_read(buf.phys, 18) == b"read by the device"
    if fabric_name == fabric.FAST:
        assert link.delivered == crossed, "a device read crossed the link as TLPs"
    errors = []
    system.nic.events.subscribe(ev.AerError, lambda e: errors.append((e.error, e.severity)))
    await set_completion_timeout(system.pf_dev, 0x1)  # 100 us
    for arm, expected in (
        (system.rc.inject.withhold_completion, [("CmpltTO", "nonfatal")]),
        (lambda rid: system.rc.inject.delay_completion(rid, 300_000), [("CmpltTO", "nonfatal")]),
        (system.rc.inject.poison_completion, [("TLP", "nonfatal")]),
    ):
        errors.clear()
        fault = arm(fn.rid)
        t0 = get_sim_time("ns")
        try:
            await fn.dma_read(buf.phys, 18)
            failed = None
        except RequestFailed as exc:
            failed = str(exc)
        assert fault.fired and fault.address == buf.phys
        timed_out = expected[0][0] == "CmpltTO"
        assert failed == f"read at {buf.phys:#x}: {'completion timeout' if timed_out else 'poisoned completion'}"
        if timed_out:
            assert 100_000 <= get_sim_time("ns") - t0 < 110_000
        assert errors == expected
        assert not fn.received_master_abort and not fn.received_target_abort
    await Timer(300, "us")  # the late completion of the second read arrives
    assert errors == [("TLP", "nonfatal"), ("UnxCmplt", "advisory")]


@cocotb.parametrize(fabric_name=list(fabric.FABRICS))
@cocotb.test()
async def a_request_no_port_claims_ends_at_the_switch(dut, fabric_name):
    """A device read of an address the host bridge routes to its secondary side but no root
    port claims (a peer-to-peer miss) is refused by the root complex's switch with Unsupported
    Request, on both fabrics (on the TLP fabric, the switch routes what a port claims in its
    sender's turn and leaves the rest to cocotbext-pcie's routing task, which answers it); a
    read the root complex claims still completes."""
    system = await build_system(dut, total_vfs=4, fabric=fabric_name)
    host_bridge, fn = system.rc.upstream_bridge, system.nic.pf
    miss = host_bridge.prefetchable_mem_base  # in the host bridge's window, in no root port's
    assert in_window(host_bridge, miss) and not in_window(system.root_port, miss)
    try:
        await fn.dma_read(miss, 4)
        failed = None
    except RequestFailed as exc:
        failed = str(exc)
    assert failed is not None and fn.received_master_abort, failed
    buf = system.pf_dma.alloc_buffer(4096)
    buf.write(0, b"claimed")
    assert await fn.dma_read(buf.phys, 7) == b"claimed"
