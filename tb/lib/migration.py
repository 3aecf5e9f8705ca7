"""The VMM's part of a live migration of a VF from one host to another (``docs/migration.md``).

Source and destination are two :class:`~tb.lib.system.System` s in one simulation, each with
its root complex, IOMMU, host memory, NIC and PF driver. The guest is the VF driver (and
whatever the test runs on it); its memory is what its DMA API holds: the mappings of the VF's
IOMMU domain and the buffers behind them.

The algorithm (:func:`migrate`):

1. **Set-up.** Dirty tracking on the source domain (IOMMU A/D bits: what the device writes) and
   the CPU dirty log (what the guest writes); the source VF enters PRE_COPY, the destination VF
   RESUMING; the guest's IOVA layout is reproduced in the destination VF's domain.
2. **Pre-copy** while traffic runs: round 0 copies every mapped page; each later round copies
   the pages dirtied since the previous one (new mappings whole, vanished ones dropped), until
   a round copies at most ``converge_pages`` pages. A guest that dirties more than that for
   ``max_rounds`` rounds makes the VMM give up: the source goes back to RUNNING, the
   destination is released, :class:`MigrationAborted` is raised (QEMU's bounded iteration).
3. **Stop-and-copy.** The guest is paused; PRE_COPY_P2P, STOP_COPY (the device quiesces, the
   PF saves the blob); the guest's last dirty pages are copied, its buffers are moved onto the
   destination's memory and its driver onto the destination VF, all in one step with no
   simulated time between (nothing of the guest runs meanwhile).
4. **Resume.** The destination host routes the VF's MSI-X vectors to the guest's handlers and
   sets Bus Master Enable; the blob goes to RESUMING, then STOP (loaded and checked), then
   RUNNING. Downtime ends here. The guest resumes, ``announce`` tells the network where the
   MAC is now (a RARP), and the source VF is reset (its filters go) once its drop count is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cocotb.triggers import Timer
from cocotb.utils import get_sim_time

import pcicore
from datasheet import device, regs
from datasheet.migration import Blob, SectionType
from iommu import DmaDevice, IommuDriver
from iommu.vtd_format import PAGE_SIZE
from pf_driver.migration import MigrationError, VfioMigState
from tb.lib.system import System
from tb.lib.timing import wait_until
from vf_driver import VfDriver

S = VfioMigState
RX_DROPS = [r.name for r in regs.STATS].index("STAT_RX_DROPS")


class MigrationAborted(Exception):
    """The VMM gave up (pre-copy did not converge, or a side refused); the guest runs on the source."""


@dataclass
class MigrationReport:
    precopy_rounds: int = 0
    pages_per_round: list[int] = field(default_factory=list)  # pages copied in each pre-copy round
    final_pages: int = 0  # pages copied while stopped
    downtime_ns: float = 0.0  # guest paused -> destination RUNNING
    blob_bytes: int = 0
    pages_compared: int = 0  # at switch-over, every mapped page of both sides
    pages_differing: int = 0
    source_rx_drops_after_stop: int = 0  # frames the stopped source VF dropped after its blob was saved


class _GuestMemory:
    """The guest's IOVA layout on both hosts: for each mapping, its pages on each side."""

    def __init__(self, src: DmaDevice, dst: DmaDevice):
        self.src, self.dst = src, dst
        self.maps: dict[int, tuple[int, int, int]] = {}  # iova -> (size, source phys, destination phys)

    def _src_phys(self, iova: int) -> int:
        return self.src.driver.iova_to_phys(self.src.domain, iova)

    def sync_layout(self) -> int:
        """New mappings are made at the same IOVA on the destination and copied whole; vanished
        ones are unmapped there. Returns the pages copied."""
        pages = 0
        current = {iova: (size, prot, self._src_phys(iova)) for iova, size, prot in self.src.mapped()}
        for iova in [i for i, (size, src, _d) in self.maps.items() if current.get(i, (0, 0, 0))[::2] != (size, src)]:
            self.dst.unmap_at(iova)
            del self.maps[iova]
        for iova, (size, prot, src) in current.items():
            if iova not in self.maps:
                self.maps[iova] = (size, src, self.dst.map_at(iova, size, prot))
                self._copy(iova, 0, size)
                pages += size // PAGE_SIZE
        return pages

    def _copy(self, iova: int, offset: int, length: int) -> None:
        _size, src_phys, dst_phys = self.maps[iova]
        data = self.src.driver.memory.read(src_phys + offset, length)
        self.dst.driver.memory.write(dst_phys + offset, data)

    def _mapping_of(self, iova: int) -> int | None:
        for base, (size, _s, _d) in self.maps.items():
            if base <= iova < base + size:
                return base
        return None

    def copy_dirty(self, device_pages: list[tuple[int, int]], cpu_pages: set[int]) -> int:
        """Copy what the device wrote (IOVA ranges) and the CPU wrote (source host pages)."""
        todo: set[int] = set()  # IOVA pages
        for iova, size in device_pages:
            todo.update(range(iova, iova + size, PAGE_SIZE))
        by_phys = {src + k: base + k for base, (size, src, _d) in self.maps.items() for k in range(0, size, PAGE_SIZE)}
        todo.update(by_phys[p] for p in cpu_pages if p in by_phys)
        copied = 0
        for page in sorted(todo):
            base = self._mapping_of(page)
            if base is not None:
                self._copy(base, page - base, PAGE_SIZE)
                copied += 1
        return copied

    def compare(self) -> tuple[int, int]:
        """(pages compared, pages differing) over every mapping."""
        compared = differing = 0
        for _iova, (size, src, dst) in self.maps.items():
            for k in range(0, size, PAGE_SIZE):
                compared += 1
                a = self.src.driver.memory.read(src + k, PAGE_SIZE)
                differing += a != self.dst.driver.memory.read(dst + k, PAGE_SIZE)
        return compared, differing

    def move_buffers(self) -> None:
        """The guest's buffers now live on the destination (its handles follow, like EPT)."""
        by_src = {src: dst for _iova, (_size, src, dst) in self.maps.items()}
        for buf in self.src.buffers():
            self.dst.adopt(buf, by_src.get(buf.phys))


async def migrate(
    src: System,
    dst: System,
    guest: VfDriver,
    dst_index: int,
    *,
    pause_guest: Callable[[], Awaitable[None]],
    resume_guest: Callable[[], Awaitable[None]],
    announce: Callable[[bytes], Awaitable[None]],
    transfer: Callable[[bytes], bytes] = bytes,
    round_ns: int = 20_000,
    converge_pages: int = 32,
    max_rounds: int = 8,
) -> MigrationReport:
    """Live-migrate the VF ``guest`` drives from ``src`` to VF ``dst_index`` of ``dst``.

    ``pause_guest``/``resume_guest`` stop and restart the guest's own activity (its vCPUs);
    ``announce(mac)`` makes the network learn the MAC's new place; ``transfer`` carries the blob
    (a test may tamper with it); ``round_ns`` is the time between pre-copy rounds."""
    report = MigrationReport()
    src_pdev, src_index, src_dma = guest.pdev, guest.vf_index, guest.dma
    dst_pdev = dst.pf.virtfns[dst_index]
    src_mig, dst_mig = src.pf.vf_migration(src_index), dst.pf.vf_migration(dst_index)
    iommu = src.iommu_driver
    try:
        await src_mig.set_state(S.PRE_COPY)
    except MigrationError as exc:
        raise MigrationAborted(f"the source refused: {exc}") from exc
    dst_dma = dst.attach_vf_domain(dst_index)
    await dst_mig.set_state_path(S.RESUMING)
    iommu.set_dirty_tracking(src_dma.domain, True)
    src_dma.start_cpu_dirty_log()
    memory = _GuestMemory(src_dma, dst_dma)

    async def give_up(why: str, paused: bool = False) -> None:
        await src_mig.set_state_path(S.RUNNING)
        iommu.set_dirty_tracking(src_dma.domain, False)
        if paused:
            await resume_guest()
        await _release(dst, dst_index)
        raise MigrationAborted(why)

    # pre-copy, the guest running
    report.pages_per_round.append(memory.sync_layout())
    while True:
        report.precopy_rounds += 1
        await Timer(round_ns, "ns")
        pages = memory.sync_layout()
        pages += memory.copy_dirty(_read_dirty(iommu, src_dma), src_dma.get_cpu_dirty_log())
        report.pages_per_round.append(pages)
        if pages <= converge_pages:
            break
        if report.precopy_rounds >= max_rounds:
            await give_up(f"pre-copy did not converge: pages per round {report.pages_per_round}")

    # stop-and-copy
    start = get_sim_time("ns")
    await pause_guest()
    await src_mig.set_state(S.PRE_COPY_P2P)
    await src_mig.set_state(S.STOP_COPY)
    blob = transfer(src_mig.save_data())
    report.blob_bytes = len(blob)
    await pcicore.pci_alloc_irq_vectors(dst_pdev, 1, device.VF_MSIX_VECTORS)
    await dst_pdev.set_master()
    dst_mig.load_data(blob)
    try:
        await dst_mig.set_state(S.STOP)  # the destination checks the whole blob, then loads it
    except MigrationError as exc:
        await give_up(f"the destination refused the blob: {exc}", paused=True)
    # from here to the guest's move nothing awaits: its last writes are all in the logs
    memory.sync_layout()
    report.final_pages = memory.copy_dirty(_read_dirty(iommu, src_dma), src_dma.get_cpu_dirty_log())
    report.pages_compared, report.pages_differing = memory.compare()
    memory.move_buffers()
    for vector, old in enumerate(src_pdev.msi_vectors[: device.VF_MSIX_VECTORS]):
        for handler in old.cb:
            pcicore.request_irq(dst_pdev, vector, handler)
    guest.vmm_resume(dst_pdev)
    await dst_mig.set_state_path(S.RUNNING)
    report.downtime_ns = get_sim_time("ns") - start
    await resume_guest()
    await announce(guest.mac)

    # the source: count what the stopped VF dropped after the save, then reset it
    await Timer(20, "us")
    now = await src.pf.read_reg(regs.PF_VF_STATS, src_index * len(regs.STATS) + RX_DROPS)
    report.source_rx_drops_after_stop = now - _saved_rx_drops(blob)
    await src_mig.set_state(S.STOP)
    iommu.set_dirty_tracking(src_dma.domain, False)
    await _release(src, src_index)
    return report


async def _release(system: System, index: int) -> None:
    """The host takes a VF back from a VMM: a software reset (PF_VFRTRIG; its filters go when
    the PF serves the VFLR event, which also ends its migration state)."""
    await system.pf.trigger_vf_reset(index)
    assert await wait_until(lambda: system.pf.vf_migration(index).state is S.RUNNING, 10_000_000, 1_000)


def _read_dirty(iommu: IommuDriver, dma: DmaDevice) -> list[tuple[int, int]]:
    return iommu.iommu_read_and_clear_dirty(dma.domain, 0, 1 << dma.domain.aw_bits)


def _saved_rx_drops(raw: bytes) -> int:
    pairs = Blob.parse(raw).section(SectionType.REGS).words
    values = dict(zip(pairs[0::2], pairs[1::2]))
    return values[regs.by_name("STAT_RX_DROPS").offset]
