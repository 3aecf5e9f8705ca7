"""The attacker: one scenario kind per episode, each a series of hostile acts a guest (or a
careless host) can do. Every act reports whether it broke a rule (``hostile``) and, if so,
whether the host could see it (``visible``): a fault, a counter or an error event.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cocotb.triggers import Timer

import pcicore
from datasheet import descriptors as d
from datasheet import device, pci, regs
from datasheet import mailbox as mbx
from datasheet import migration as mig
from datasheet.mailbox import Offload, Opcode
from datasheet.migration import Blob, Section, SectionType, VfioMigState
from datasheet.regs import Access
from iommu import DMA_TO_DEVICE
from iommu.events import MsiRequest, Translation
from model import events as ev
from pf_driver.migration import MigrationError
from pf_driver.vf_info import LinkState
from tb.fuzz.world import NUM_VFS, RING_SIZE, TOTAL_VFS, open_vfs
from tb.uvm import offload_reference as offref

SETTLE_NS = 20_000
PARTNER = bytes.fromhex("00163e000001")
VF_BAR0 = regs.element_offsets(is_vf=True)  # implemented dword -> register name
#: offsets of the PF's own registers (PF_ICR, PF_IMR, PF_VFRTRIG ...) inside a VF's BAR0 span,
#: where a VF implements nothing
PF_BAR0 = regs.element_offsets(is_vf=False)
PF_AIMED = tuple(sorted(off for off in PF_BAR0 if off not in VF_BAR0 and off < device.VF_REG_BAR_SIZE))
ERR_FLAGS = {f.name: f.mask for f in regs.ERR_STATUS.fields}
COMPLETER_ABORT = "completer_abort"
FEATURE_NAMES = ("rx-checksum", "tx-checksum", "tso", "rxhash", "rxvlan", "txvlan")
#: the attacker's data buffer for offload chains (room for five 16 KiB buffers)
OFFLOAD_DATA = 5 * 16384
#: offload messages the PF must refuse
BAD_OFFLOAD_REQUESTS = [
    (Opcode.SET_OFFLOADS, [0xFFFFFFFF]),
    (Opcode.SET_RSS_HENA, [0xFFFF]),
    (Opcode.CONFIG_RSS_KEY, [0] * (mbx.RSS_KEY_DWORDS + 1)),
    (Opcode.CONFIG_RSS_LUT, [0xFFFFFFFF] * mbx.RSS_LUT_DWORDS),
    (Opcode.CONFIG_RSS_LUT, [0] * (mbx.RSS_LUT_DWORDS - 1)),
    (Opcode.GET_OFFLOADS, [1]),
]


@dataclass
class Act:
    scenario: str
    kind: str
    hostile: bool
    visible: bool | None = None  # None: not hostile, nothing to see
    detail: str = ""


class Attacker:
    """Hostile acts on ``world.attacker``; ``world.rec`` tells what the host saw."""

    def __init__(self, world, rng: random.Random):
        self.w, self.rng = world, rng

    @property
    def vf(self):
        return self.w.attacker

    # -- what the host sees ----------------------------------------------------------------------
    def _seen(self, mark: int) -> bool:
        """A fault, a counter-backed error event or a reset of the attacker since ``mark``."""
        w, rec = self.w, self.w.rec
        fn, rid = w.attacker_fn, w.attacker_rid
        return bool(
            rec.since(mark, ev.QueueStopped, fn=fn)
            or rec.since(mark, ev.FunctionError, fn=fn)
            or rec.since(mark, ev.MailboxViolation, fn=fn)
            or rec.since(mark, ev.Reset, fn=fn)
            or rec.since(mark, ev.AerError, fn=fn)
            or [t for t in rec.since(mark, Translation, source_id=rid) if t.fault]
            or [m for m in rec.since(mark, MsiRequest, source_id=rid) if not m.delivered]
            or [
                b
                for b in rec.since(mark, ev.Writeback, fn=fn)
                if b.status
                & (d.STATUS_ERR_LEN.mask | d.STATUS_ERR_DMA.mask | d.STATUS_DROPPED.mask | d.STATUS_ERR_OFFLOAD.mask)
            ]
        )

    async def _settle(self, ns: int = SETTLE_NS) -> None:
        await Timer(ns, "ns")

    # -- address pool: where a hostile pointer points ------------------------------------------------
    def address(self) -> int:
        w, rng = self.w, self.rng
        vf = self.vf
        victims = w.victims
        choice = rng.randrange(9)
        if choice == 0 and vf.netdev is not None and vf.netdev.tx:
            return vf.netdev.tx[0].data_iova + rng.randrange(0, 2048, 64)  # its own buffer: legal
        if choice == 1:
            v = rng.choice(victims)
            return v.netdev.rx[0].data_iova + rng.randrange(0, 4096, 64)  # a victim's IOVA
        if choice == 2:
            return rng.choice(w.canaries).phys  # host memory nobody maps
        if choice == 3:
            return w.system.rc.msi_region.get_absolute_address(0)  # the interrupt window
        if choice == 4:
            return w.system.pf_dev.bar_addr[device.REG_BAR] + rng.randrange(0, 0x100, 4)  # looks like a BAR
        if choice == 5:
            return rng.choice(victims).pdev.bar_addr[device.REG_BAR]
        if choice == 6:
            return (1 << 64) - rng.choice([4, 64, 512, 4096])  # the top of the space
        if choice == 7:
            return 0
        return rng.getrandbits(64) & ~0x3

    def readable(self, addr: int, length: int) -> bool:
        """Would the attacker's domain let it read ``length`` bytes at ``addr``?"""
        drv, dom = self.w.system.iommu_driver, self.w.attacker_domain
        if dom is None or addr + max(length, 1) > 1 << 48:
            return False
        return all(
            drv.iova_to_phys(dom, page) is not None for page in range(addr & ~0xFFF, addr + max(length, 1), 0x1000)
        )

    # -- scenario kinds ------------------------------------------------------------------------------
    async def mmio(self) -> list[Act]:
        """Reads and writes of any size and alignment anywhere in its BAR0 and MSI-X windows."""
        acts = []
        for _ in range(self.rng.randint(6, 14)):
            acts.append(await self._mmio_once())
        acts.append(await self._pf_register_once())
        return acts

    async def _pf_register_once(self) -> Act:
        """A read, or a write of all ones, at the offset of one of the PF's registers in its own
        BAR0 (PF_ICR, the PF's interrupt causes, half the time): a VF has nothing there, so
        UNIMPL, and the PF sees no cause of its own (its driver does not reset the PF)."""
        rng, vf, pf = self.rng, self.vf, self.w.system.pf
        offset = regs.PF_ICR.offset if rng.random() < 0.5 else rng.choice(PF_AIMED)
        write = rng.random() < 0.5
        await vf.write_reg(regs.ERR_STATUS, 0xFFFFFFFF)
        pf_errors = pf.errors
        window = vf.pdev.bar_window[device.REG_BAR]
        if write:
            await window.write_dword(offset, 0xFFFFFFFF)
        else:
            await window.read_dword(offset)
        await self._settle(2_000)
        unimpl = bool(await vf.read_reg(regs.ERR_STATUS) & ERR_FLAGS["UNIMPL"])
        detail = f"{'write' if write else 'read'} at BAR0+{offset:#x} (the PF's {PF_BAR0[offset]})"
        return Act("mmio", "pf_register", True, unimpl and pf.errors == pf_errors, detail)

    async def _mmio_once(self) -> Act:
        rng, vf = self.rng, self.vf
        bar = rng.choice([device.REG_BAR, device.MSIX_BAR])
        size = device.VF_REG_BAR_SIZE if bar == device.REG_BAR else device.VF_MSIX_BAR_SIZE
        length = rng.choice([1, 2, 3, 4, 4, 8, 12])
        if bar == device.REG_BAR and rng.random() < 0.5:
            offset = rng.choice(list(VF_BAR0)) + rng.randrange(4)
        elif bar == device.MSIX_BAR and rng.random() < 0.5:  # aimed at the Table or the PBA
            table = device.VF_MSIX_VECTORS * pci.PCI_MSIX_ENTRY_SIZE
            start, span = rng.choice([(device.MSIX_TABLE_OFFSET, table), (device.MSIX_PBA_OFFSET, 8)])
            offset = start + (rng.randrange(span) & ~rng.choice([0, 3, 7]))
        else:
            offset = rng.randrange(0, size - 16) & ~rng.choice([0, 3])
        write = rng.random() < 0.6
        expect = self._mmio_expectation(bar, offset, length, write)
        window = vf.pdev.bar_window[bar]
        if expect is None and write:  # a legal write to a register: only the harmless ones
            touched = {VF_BAR0.get(dw) for dw in range(offset & ~3, offset + length, 4)}
            if bar == device.REG_BAR and touched - {"SCRATCH", "EITR"}:
                write = False
        await vf.write_reg(regs.ERR_STATUS, 0xFFFFFFFF)
        mark = self.w.rec.mark()
        try:
            if write:
                await window.write(offset, bytes(rng.getrandbits(8) for _ in range(length)))
            else:
                await window.read(offset, length)
        except Exception:  # noqa: BLE001 -- cocotbext raises on a UR or CA completion
            pass
        if expect is None:
            return Act("mmio", "register" if bar == device.REG_BAR else "msix_table", False)
        detail = f"{'write' if write else 'read'} of {length} at BAR{bar}+{offset:#x}"
        if expect == COMPLETER_ABORT:
            await self._settle(2_000)
            return Act("mmio", expect, True, self._seen(mark), detail)
        status = await vf.read_reg(regs.ERR_STATUS)
        return Act("mmio", expect.lower(), True, bool(status & ERR_FLAGS[expect]), detail)

    @staticmethod
    def _mmio_expectation(bar: int, offset: int, length: int, write: bool) -> str | None:
        """The ERR_STATUS flag a bad access sets, or Completer Abort for an MSI-X Table or PBA
        access that is not an aligned DWORD or QWORD (None: the access is legal)."""
        dwords = range(offset & ~3, offset + length, 4)
        if bar == device.MSIX_BAR:
            table_end = device.MSIX_TABLE_OFFSET + device.VF_MSIX_VECTORS * pci.PCI_MSIX_ENTRY_SIZE
            pba = (device.MSIX_PBA_OFFSET, device.MSIX_PBA_OFFSET + 8)
            span = (offset & ~3, (offset + length + 3) & ~3)
            if any(start < span[1] and span[0] < end for start, end in ((device.MSIX_TABLE_OFFSET, table_end), pba)):
                aligned = (length == 4 and offset % 4 == 0) or (length == 8 and offset % 8 == 0)
                if not aligned:
                    return COMPLETER_ABORT
            if offset >= device.MSIX_TABLE_OFFSET and offset + length <= table_end:
                return None
            if not write and pba[0] <= offset and offset + length <= pba[1]:
                return None
            return "RO_WRITE" if write and pba[0] <= offset < pba[1] else "UNIMPL"
        if any(dw not in VF_BAR0 for dw in dwords):
            return "UNIMPL"
        if write and any(regs.by_name(VF_BAR0[dw]).access is Access.RO for dw in dwords):
            return "RO_WRITE"
        return None

    async def descriptors(self) -> list[Act]:
        """A TX ring of its choosing filled with descriptors pointing anywhere, any length; a
        frame that runs past the end of its own mapping."""
        acts = []
        for _ in range(self.rng.randint(2, 4)):
            acts.append(await self._tx_ring_once())
        acts.append(await self._past_mapping_once(rx=False))
        return acts

    async def _past_mapping_once(self, rx: bool) -> Act:
        """A buffer in the last bytes of a page of its own, which the device has just used (its
        translation cached), running on into the page after it, which its domain need not map:
        the one DMA covers both pages. What lies in its own page may be read or land; every
        request beyond faults on its own, and nothing reaches memory it was not given."""
        rng, vf, w = self.rng, self.vf, self.w
        ring, ring_iova = vf.dma.dma_alloc_coherent(8 * d.DESC_SIZE)
        pages = sorted((vf.dma.dma_alloc_coherent(4096) for _ in range(2)), key=lambda page: page[1])
        (own, own_iova), (after, after_iova) = pages
        if after_iova == own_iova + 4096 and rng.random() < 0.8:
            vf.dma.dma_free_coherent(after, after_iova)  # the page after its own: unmapped now
        start = own_iova + 4096 - rng.choice([4, 64, 700, 1400])
        size = 1514 if not rx else 2048
        queue = 0 if rx else rng.randrange(device.VF_QUEUE_PAIRS)
        if rx:  # a buffer in its own page first (that frame lands there), then the one past it
            ring.write(0, d.rx_desc(own_iova, 2048))
            ring.write(d.DESC_SIZE, d.rx_desc(start, size))
        else:  # a frame from its own page first, then one running past it
            own.write(0, PARTNER + vf.mac + bytes(1502))
            ring.write(0, d.tx_desc(own_iova, 1514, True))
            ring.write(d.DESC_SIZE, d.tx_desc(start, size, True))
        await self._program_ring(rx, queue, ring_iova, 8)
        hostile = not self.readable(start, size)
        mark = w.rec.mark()
        await vf.write_reg(regs.RDT if rx else regs.TDT, 2, queue)
        if rx:
            for _ in range(2):
                await w.system.nic.uplink.send(vf.mac + PARTNER + b"\x08\x00" + bytes(1400))
        await self._settle()
        return Act(
            "rx_buffers" if rx else "descriptors",
            "past_mapping",
            hostile,
            self._seen(mark) if hostile else None,
            f"{'RX' if rx else 'TX'}{queue}: {size} bytes from {4096 - (start - own_iova)} before the end of its page",
        )

    async def _program_ring(self, rx: bool, queue: int, base: int, length: int, vector: int = 1) -> None:
        vf = self.vf
        names = ("RDBAL", "RDBAH", "RDLEN", "RXDCTL") if rx else ("TDBAL", "TDBAH", "TDLEN", "TXDCTL")
        lo, hi, ln, ctl = (regs.by_name(n) for n in names)
        await vf.write_reg(ctl, 0, queue)
        await vf.write_reg(lo, base & 0xFFFFFFFF, queue)
        await vf.write_reg(hi, base >> 32, queue)
        await vf.write_reg(ln, length, queue)
        await vf.write_reg(ctl, regs.TXDCTL.field("VECTOR").put(1, vector), queue)

    async def _tx_ring_once(self) -> Act:
        rng, vf = self.rng, self.vf
        size = rng.choice([8, 16, 64])
        # a ring mapped for the device to read only: it fetches and sends, its write-backs fault
        read_only = rng.random() < 0.2
        if read_only:
            ring = vf.dma.alloc_buffer(size * d.DESC_SIZE)
            ring_iova = vf.dma.dma_map(ring, size * d.DESC_SIZE, DMA_TO_DEVICE)
        else:
            ring, ring_iova = vf.dma.dma_alloc_coherent(size * d.DESC_SIZE)
        data, data_iova = vf.dma.dma_alloc_coherent(4096)
        data.write(0, bytes(rng.getrandbits(8) for _ in range(64)))
        count = rng.randint(1, size - 1)
        # only a closed chain (EOP, or the descriptor limit) is the device's to take; a chain still
        # open at the tail waits for its EOP like a real NIC's, so nothing in it is judged yet
        hostile, bad_chain, chain, chain_len, closed = False, False, 0, 0, False
        for slot in range(count):
            if rng.random() < 0.4:
                addr, length = data_iova, rng.choice([60, 64, 1514])
            else:
                addr, length = self.address(), rng.choice([0, 1, 60, 1514, device.MAX_FRAME + 1, 0xFFFF])
            eop = rng.random() < 0.7
            ring.write(slot * d.DESC_SIZE, d.tx_desc(addr, length, eop))
            chain, chain_len = chain + 1, chain_len + length
            bad_chain |= length == 0 or not self.readable(addr, length)
            if eop or chain == device.TX_MAX_FRAME_DESCS:
                hostile |= bad_chain or chain_len > device.MAX_FRAME or not eop
                bad_chain, chain, chain_len, closed = False, 0, 0, True
        queue = rng.randrange(device.VF_QUEUE_PAIRS)
        await self._program_ring(False, queue, ring_iova, size)
        tail = count if rng.random() < 0.8 else size + rng.randrange(1000)
        hostile |= tail >= size or (read_only and closed)
        mark = self.w.rec.mark()
        await vf.write_reg(regs.TDT, tail, queue)
        await self._settle()
        return Act(
            "descriptors",
            "read_only_ring" if read_only else "tx_ring",
            hostile,
            self._seen(mark) if hostile else None,
            f"queue {queue}, {count} descriptors, tail {tail}{', ring read-only' if read_only else ''}",
        )

    async def ring_geometry(self) -> list[Act]:
        """Rings at bad bases and of bad lengths, enabled anyway; tails beyond the ring."""
        rng, acts = self.rng, []
        for _ in range(rng.randint(3, 6)):
            base = rng.choice([0, 0x1000 + rng.choice([4, 8, 64]), self.address() & ~0x7F, 1 << 60])
            length = rng.choice([0, 7, 12, 100, device.RING_MAX_DESCS * 2, 8, 64])
            rx, queue = rng.random() < 0.5, rng.randrange(device.VF_QUEUE_PAIRS)
            bad = device.ring_geometry_error(base, length) is not None
            mark = self.w.rec.mark()
            await self._program_ring(rx, queue, base, length)
            if not bad:
                await self.vf.write_reg(regs.RDT if rx else regs.TDT, length + rng.randrange(5), queue)
            await self._settle(2_000)
            acts.append(
                Act(
                    "ring_geometry",
                    "bad_ring" if bad else "bad_tail",
                    True,
                    self._seen(mark),
                    f"{'RX' if rx else 'TX'}{queue} base {base:#x} length {length}",
                )
            )
        return acts

    async def rx_buffers(self) -> list[Act]:
        """RX buffers anywhere (the interrupt window with a partner-made frame whose bytes are a
        victim's vector data, BAR-like addresses, the top of the space), then frames to fill them."""
        rng, vf, w = self.rng, self.vf, self.w
        size = 64
        ring, ring_iova = vf.dma.dma_alloc_coherent(size * d.DESC_SIZE)
        own, own_iova = vf.dma.dma_alloc_coherent(4096)
        victim_data = [v.data for v in rng.choice(w.victims).pdev.msi_vectors]
        msi = w.system.rc.msi_region.get_absolute_address(0)
        hostile = False
        for slot in range(size - 1):
            step = slot % 4
            if step == 0:  # 8 bytes of its own: the next buffer gets frame bytes 8..11
                addr, buf = own_iova + 16 * (slot % 128), 8
            elif step == 1 and rng.random() < 0.5:
                addr, buf = msi, 4  # ... in the interrupt window: the partner's vector data
            elif step == 3:
                addr, buf = own_iova + 2048, 2048
            else:
                addr, buf = self.address(), rng.choice([4, 8, 256, 2048])
            ring.write(slot * d.DESC_SIZE, d.rx_desc(addr, buf))
            hostile |= not self.readable(addr, buf)
        await self._program_ring(True, 0, ring_iova, size)
        await vf.write_reg(regs.RDT, size - 1, 0)
        uplink = w.system.nic.uplink
        mark = w.rec.mark()
        frames = rng.randint(4, 10)
        for _ in range(frames):
            data = rng.choice(victim_data).to_bytes(4, "little")
            src = bytes([0x02, 0x00]) + data  # bytes 8..11 of the frame: vector data
            payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([46, 200, 1400])))
            await uplink.send(vf.mac + src + b"\x08\x00" + payload)
        await self._settle()
        act = Act("rx_buffers", "rx_ring", hostile, self._seen(mark) if hostile else None, f"{frames} frames")
        return [act, await self._past_mapping_once(rx=True)]

    async def _raw_message(self, words: list[int], take_lock: bool = True) -> None:
        vf = self.vf
        vfu, req = regs.VF_MAILBOX.field("VFU").mask, regs.VF_MAILBOX.field("REQ").mask
        if take_lock:
            await vf.write_reg(regs.VF_MAILBOX, vfu)
        for i, word in enumerate(words[: mbx.MBX_DWORDS]):
            await vf.write_reg(regs.VF_MBMEM, word, i)
        await vf.write_reg(regs.VF_MAILBOX, req)

    def _malformed(self) -> list[int]:
        """A message the PF must refuse: an unknown or PF->VF opcode, or a known one whose LEN is
        outside its payload range."""
        rng = self.rng
        known = [spec for spec in mbx.MESSAGES if spec.direction is mbx.Direction.VF_TO_PF]
        if rng.random() < 0.4:
            opcode = rng.choice([rng.randrange(0x100, 0x10000), Opcode.LINK_STATUS])
            length = rng.randrange(mbx.MAX_PAYLOAD + 1)
        else:
            spec = rng.choice(known)
            lo, hi = spec.request_len
            opcode, length = (
                spec.opcode,
                rng.choice([n for n in (lo - 1, hi + 1, mbx.MAX_PAYLOAD, 255) if n >= 0 and not lo <= n <= hi]),
            )
        return [mbx.HDR_LEN.put(mbx.HDR_OPCODE.put(0, opcode), length)] + [
            rng.getrandbits(32) for _ in range(mbx.MAX_PAYLOAD)
        ]

    async def mailbox_garbage(self) -> list[Act]:
        """Malformed messages (the PF must NACK each), random ones, buffer writes without the lock,
        ACKs of messages the PF never sent (they change nothing: docs/mailbox.md)."""
        rng, acts = self.rng, []
        info = self.w.system.pf.vf_info(self.vf.vf_index)
        for _ in range(rng.randint(4, 10)):
            await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
            what = rng.choice(["malformed", "malformed", "random", "no_lock", "stray_ack"])
            mark = self.w.rec.mark()
            if what == "no_lock":
                await self.vf.write_reg(regs.VF_MBMEM, rng.getrandbits(32), rng.randrange(mbx.MBX_DWORDS))
                await self._settle(2_000)
                acts.append(Act("mailbox_garbage", what, True, self._seen(mark)))
                continue
            if what == "stray_ack":
                for _ in range(rng.randint(1, 20)):
                    await self.vf.write_reg(regs.VF_MAILBOX, regs.VF_MAILBOX.field("ACK").mask)
                await self._settle(2_000)
                acts.append(Act("mailbox_garbage", what, False))
                continue
            nacked, received = info.nacked, info.received
            words = self._malformed() if what == "malformed" else [rng.getrandbits(32) for _ in range(mbx.MBX_DWORDS)]
            await self._raw_message(words)
            for _ in range(40):  # until the PF has served it
                if info.received > received:
                    break
                await self._settle(5_000)
            if what == "malformed":
                acts.append(Act("mailbox_garbage", what, True, info.nacked > nacked, f"header {words[0]:#010x}"))
            else:
                acts.append(Act("mailbox_garbage", what, False))
        return acts

    async def mailbox_flood(self) -> list[Act]:
        """Requests back to back, far beyond the PF's rate limit."""
        info = self.w.system.pf.vf_info(self.vf.vf_index)
        limited = info.rate_limited
        get_queues = [mbx.HDR_OPCODE.put(0, Opcode.GET_QUEUES)]
        for _ in range(mbx.MBX_RATE_BURST * 2):
            await self._raw_message(get_queues)
            await Timer(2_000, "ns")
        await self._settle(100_000)
        return [Act("mailbox_flood", "flood", True, info.rate_limited > limited)]

    async def lock_hog(self) -> list[Act]:
        """Takes the buffer lock and keeps it while the PF needs the buffer: for a notification,
        then right after ringing REQ, while the PF answers (it reads a request without the lock
        and takes the lock for its reply)."""
        w, vf = self.w, self.vf
        vfu = regs.VF_MAILBOX.field("VFU").mask
        info = w.system.pf.vf_info(vf.vf_index)
        hogs = info.lock_hogs
        await vf.write_reg(regs.VF_MAILBOX, vfu)
        w.system.pf.set_vf_link_state(vf.vf_index, self.rng.choice([LinkState.DISABLE, LinkState.ENABLE]))
        await self._settle(mbx.MBX_LOCK_HOLD_NS + 50_000)
        w.system.pf.set_vf_link_state(vf.vf_index, LinkState.AUTO)
        acts = [Act("lock_hog", "hold_vfu", True, info.lock_hogs > hogs)]
        await self._settle(mbx.MBX_LOCK_HOLD_NS)  # the notification it held up goes out
        hogs, received = info.lock_hogs, info.received
        await self._raw_message([mbx.HDR_OPCODE.put(0, Opcode.GET_QUEUES)])
        await vf.write_reg(regs.VF_MAILBOX, vfu)  # at once, before the PF answers
        await self._settle(mbx.MBX_LOCK_HOLD_NS + 50_000)
        acts.append(Act("lock_hog", "hold_vfu_after_req", True, info.lock_hogs > hogs and info.received > received))
        return acts

    async def flr_storm(self) -> list[Act]:
        """Function Level Resets and software resets back to back, with traffic of its own; some
        FLRs right after a mailbox request, while the PF answers it."""
        rng, vf, acts = self.rng, self.vf, []
        exp = await pcicore.find_capability(vf.pdev, pci.PCI_CAP_ID_EXP)
        for _ in range(rng.randint(2, 5)):
            if vf.netdev is not None and vf.netdev.tx:
                await vf.netdev.start_xmit(vf.mac + PARTNER + bytes(60))
            mark = self.w.rec.mark()
            roll = rng.random()
            if roll < 0.6:
                kind = "flr"
                if roll < 0.2:  # SET_MAC makes the PF program the switch before it replies
                    kind = "mid_request"
                    await self._raw_message(
                        [mbx.HDR_LEN.put(mbx.HDR_OPCODE.put(0, Opcode.SET_MAC), 2)] + mbx.mac_to_words(vf.mac)
                    )
                    await Timer(rng.randint(1, 3_000), "ns")
                ctl = await vf.pdev.config_read_word(exp + pci.PCI_EXP_DEVCTL)
                await vf.pdev.config_write_word(exp + pci.PCI_EXP_DEVCTL, ctl | pci.PCI_EXP_DEVCTL_BCR_FLR)
            else:
                await vf.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)
                kind = "soft"
            await self._settle(rng.randint(100, 20_000))
            acts.append(Act("flr_storm", kind, True, bool(self.w.rec.since(mark, ev.Reset, fn=self.w.attacker_fn))))
        return acts

    async def bme(self) -> list[Act]:
        """Clears its own Bus Master Enable with DMA and interrupts on the way, then sets it again."""
        vf, acts = self.vf, []
        cmd = await vf.pdev.config_read_word(pci.PCI_COMMAND)
        await vf.pdev.config_write_word(pci.PCI_COMMAND, cmd & ~pci.PCI_COMMAND_MASTER)
        mark = self.w.rec.mark()
        sent = vf.netdev is not None and vf.netdev.tx and await vf.netdev.start_xmit(vf.mac + PARTNER + bytes(60))
        await self.w.system.nic.uplink.send(vf.mac + PARTNER + b"\x08\x00" + bytes(50))
        await self._settle()
        held = self.w.rec.since(mark, ev.Interrupt, fn=self.w.attacker_fn, outcome="held")
        if sent:
            acts.append(Act("bme", "dma_without_bme", True, self._seen(mark) or bool(held)))
        await vf.pdev.config_write_word(pci.PCI_COMMAND, cmd)
        await self._settle()
        return acts or [Act("bme", "toggle", False)]

    async def msix_table(self) -> list[Act]:
        """Points its own MSI-X table entries at other functions' vectors, then makes them fire."""
        w, vf, rng = self.w, self.vf, self.rng
        table = vf.pdev.bar_window[device.MSIX_BAR]
        target = rng.choice(w.victims).pdev.msi_vectors[rng.randrange(device.VF_MSIX_VECTORS)]
        for vector in range(device.VF_MSIX_VECTORS):
            entry = device.MSIX_TABLE_OFFSET + vector * pci.PCI_MSIX_ENTRY_SIZE
            await table.write_dword(entry + pci.PCI_MSIX_ENTRY_LOWER_ADDR, target.addr & 0xFFFFFFFF)
            await table.write_dword(entry + pci.PCI_MSIX_ENTRY_UPPER_ADDR, target.addr >> 32)
            await table.write_dword(entry + pci.PCI_MSIX_ENTRY_DATA, target.data)
            await table.write_dword(entry + pci.PCI_MSIX_ENTRY_VECTOR_CTRL, 0)
        mark = w.rec.mark()
        await self._raw_message([mbx.HDR_OPCODE.put(0, Opcode.GET_QUEUES)])  # the PF answers: its vector fires
        await self._settle(50_000)
        tried = w.rec.since(mark, MsiRequest, source_id=w.attacker_rid)
        return [Act("msix_table", "foreign_vector", bool(tried), bool(tried) and all(not m.delivered for m in tried))]

    async def spoof(self) -> list[Act]:
        """Frames with a victim's source MAC."""
        vf, acts = self.vf, []
        for _ in range(self.rng.randint(2, 5)):
            victim = self.rng.choice(self.w.victims)
            mark = self.w.rec.mark()
            if (
                vf.netdev is None
                or not vf.netdev.tx
                or not await vf.netdev.start_xmit(PARTNER + victim.mac + bytes(52))
            ):
                continue
            await self._settle()
            acts.append(Act("spoof", "source_mac", True, self._seen(mark)))
        return acts

    async def migration(self) -> list[Act]:
        """The host migrates the attacker's VF (saves its state, loads blobs into it) while its
        guest goes on: doorbells rung while it is stopped (nothing may move), blobs from an
        untrusted stream (corrupted, or sealed with a valid CRC around hostile ring state). (A VF
        in the error state is the model's own fault here: tb/tests/test_migration_states.py.)"""
        w, rng, vf = self.w, self.rng, self.vf
        fn, index = w.attacker_fn, w.attacker_index
        mig_vf = w.system.pf.vf_migration(index)
        acts = []
        await mig_vf.set_state_path(VfioMigState.STOP_COPY)
        blob = mig_vf.save_data()
        mark = w.rec.mark()
        if vf.netdev is not None and vf.netdev.tx:
            await vf.netdev.start_xmit(vf.mac + PARTNER + bytes(60))
        await vf.write_reg(regs.TDT, rng.randrange(2 * RING_SIZE))
        await self._settle()
        moved = w.rec.since(mark, ev.DescriptorFetch, fn=fn) + w.rec.since(mark, ev.Writeback, fn=fn)
        acts.append(Act("migration", "stopped_doorbell", False))
        if moved:
            acts.append(Act("migration", "dma_while_stopped", True, False, f"{len(moved)} DMA events"))
        await mig_vf.set_state_path(VfioMigState.RESUMING)
        for _ in range(rng.randint(2, 4)):
            kind, bad, hostile = self._hostile_blob(blob)
            mark = w.rec.mark()
            mig_vf.load_data(bad)
            try:
                await mig_vf.set_state(VfioMigState.STOP)
            except MigrationError as exc:
                acts.append(Act("migration", kind, True, exc.error is not None, str(exc)))
                continue
            await mig_vf.set_state_path(VfioMigState.RUNNING)  # loaded: the device must contain it
            await self._settle()
            acts.append(Act("migration", kind, hostile, self._seen(mark) if hostile else None))
            await mig_vf.set_state_path(VfioMigState.RESUMING)
        mig_vf.load_data(blob)
        await mig_vf.set_state_path(VfioMigState.RUNNING)
        return acts

    def _hostile_blob(self, raw: bytes) -> tuple[str, bytes, bool]:
        """A corrupted blob, or a resealed one whose QUEUES section enables a ring with another
        length, head or tail: hostile (the third item) when that makes the ring invalid (a length
        that is no power of two, a head or tail beyond the ring), legal when it stays inside."""
        rng = self.rng
        if rng.random() < 0.4:
            pos = rng.randrange(len(raw))
            return "tampered_blob", raw[:pos] + bytes([raw[pos] ^ (1 << rng.randrange(8))]) + raw[pos + 1 :], True
        hostile = True
        blob = Blob.parse(raw)
        sections = []
        for section in blob.sections:
            if section.type == SectionType.QUEUES:
                words = section.words
                ring = 1 + rng.randrange(2) * mig.RING_WORDS  # queue 0's TX or RX
                words[ring + 3] = regs.TXDCTL.field("ENABLE").put(words[ring + 3], 1)
                field = rng.choice([2, 4, 5])  # length, head, tail
                words[ring + field] = value = rng.choice([3, 100, RING_SIZE + 1, 0xFFFFFFFF])
                hostile = field == 2 or value >= words[ring + 2]
                section = Section.of_words(SectionType.QUEUES, words)
            sections.append(section)
        return "crafted_blob", Blob(blob.compat, blob.vf_index, sections).pack(), hostile

    async def aer(self) -> list[Act]:
        """Errors its own function detects and reports (AER): MSI-X Table accesses that are not
        an aligned DWORD (Completer Abort), its function put in D3hot then accessed (Unsupported
        Request), a flood of them back to back (the host masks them in that VF alone)."""
        rng, acts = self.rng, []
        for _ in range(rng.randint(2, 4)):
            kind = rng.choice(["completer_abort", "completer_abort", "error_flood", "unsupported_request"])
            acts.append(await getattr(self, f"_aer_{kind}")())
            if kind == "unsupported_request":
                break  # the host resets the VF: the act ends the scenario
        await self.w.system.aer.wait_idle(200_000_000)
        return acts

    async def _msix_misaligned(self, write: bool) -> None:
        table = self.vf.pdev.bar_window[device.MSIX_BAR]
        offset = device.MSIX_TABLE_OFFSET + self.rng.randrange(device.VF_MSIX_VECTORS * pci.PCI_MSIX_ENTRY_SIZE - 4)
        length = self.rng.choice([1, 2, 3]) if offset % 4 == 0 else 1
        try:
            if write:
                await table.write(offset, bytes(self.rng.getrandbits(8) for _ in range(length)))
            else:
                await table.read(offset, length)
        except Exception:  # noqa: BLE001 -- the CA completion
            pass

    async def _aer_completer_abort(self) -> Act:
        mark, write = self.w.rec.mark(), self.rng.random() < 0.5
        await self._msix_misaligned(write)
        await self._settle(2_000)
        return Act("aer", "completer_abort", True, self._seen(mark), "write" if write else "read")

    async def _aer_error_flood(self) -> Act:
        mark, count = self.w.rec.mark(), self.rng.randint(20, 60)
        for _ in range(count):
            await self._msix_misaligned(write=True)
        await self._settle(5_000)
        seen = len(self.w.rec.since(mark, ev.AerError, fn=self.w.attacker_fn))
        return Act("aer", "error_flood", True, seen == count, f"{count} errors, {seen} logged")

    async def _aer_unsupported_request(self) -> Act:
        vf = self.vf
        pm = await pcicore.find_capability(vf.pdev, pci.PCI_CAP_ID_PM)
        ctrl = await vf.pdev.config_read_word(pm + pci.PCI_PM_CTRL)
        await vf.pdev.config_write_word(pm + pci.PCI_PM_CTRL, ctrl | pci.PCI_D3HOT)
        mark = self.w.rec.mark()
        await vf.pdev.bar_window[device.REG_BAR].write_dword(regs.SCRATCH.offset, self.rng.getrandbits(32))
        await self._settle(2_000)
        return Act("aer", "unsupported_request", True, self._seen(mark), "memory write in D3hot")

    async def offloads(self) -> list[Act]:
        """TX chains asking for offloads with any field values (context words, MSS, command bits,
        VLAN tags, buffer lengths), with its offloads on or off; malformed offload requests to
        the PF. The reference says which chains the device must refuse."""
        rng, vf, w = self.rng, self.vf, self.w
        acts = []
        if vf.netdev is None or not vf.netdev.tx:
            return acts
        if rng.random() < 0.6 and vf.offload_caps:  # legal: its own choice of features
            await vf.netdev.set_features(**{name.replace("-", "_"): rng.random() < 0.8 for name in FEATURE_NAMES})
        data, data_iova = vf.dma.dma_alloc_coherent(OFFLOAD_DATA)
        head = PARTNER + vf.mac + b"\x08\x00"  # its own source: what it sends may go out
        data.write(0, head + bytes(rng.getrandbits(8) for _ in range(200)))
        ring, ring_iova = vf.dma.dma_alloc_coherent(64 * d.DESC_SIZE)
        queue = rng.randrange(1, device.VF_QUEUE_PAIRS)
        await self._program_ring(False, queue, ring_iova, 64)
        slot = 0
        for n in range(rng.randint(3, 7)):
            descs, chain = self._offload_chain(data_iova, legal=n == 0)
            for raw in descs:
                ring.write(slot * d.DESC_SIZE, raw)
                slot += 1
            info = w.system.pf.vf_info(vf.vf_index)
            on = info.offloads & info.allowed_offloads
            permits = offref.Permits(bool(on & Offload.TXCSUM), bool(on & Offload.TSO), bool(on & Offload.TXVLAN))
            refusal = offref.tx_refusal(chain, permits)
            mark = w.rec.mark()
            await vf.write_reg(regs.TDT, slot, queue)
            await self._settle(rng.choice([5_000, SETTLE_NS]))
            acts.append(
                Act(
                    "offloads",
                    "tx_offload",
                    refusal is not None,
                    self._seen(mark) if refusal is not None else None,
                    f"{len(chain)} descriptors: {refusal}",
                )
            )
        for opcode, payload in rng.sample(BAD_OFFLOAD_REQUESTS, rng.randint(2, 4)):
            await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
            info = w.system.pf.vf_info(vf.vf_index)
            nacked = info.nacked
            reply = await vf.request(opcode, payload)
            acts.append(Act("offloads", "offload_request", True, reply.nack and info.nacked > nacked, f"{opcode.name}"))
        return acts

    def _offload_chain(self, data_iova: int, legal: bool = False) -> tuple[list[bytes], list]:
        """1-5 descriptors, the last a data descriptor with EOP; context descriptors anywhere with any
        fields, data descriptors of any length inside its own buffer with any offload bits.
        ``legal``: a context descriptor and one frame asking for nothing."""
        rng = self.rng
        descs, chain = [], []
        count = rng.randint(1, 5)
        if legal:
            ctx = d.TxContext(14, 20, 20, False, d.L4Type.TCP)
            length = rng.randint(60, 1514)
            return [ctx.encode(), d.tx_desc(data_iova, length)], [
                offref.ChainDesc(context=ctx),
                offref.ChainDesc(length, True),
            ]
        if rng.random() < 0.4:  # a well-formed request (TCP/IPv4 offsets), any offload bits
            ctx = d.TxContext(14, 20, 20, False, d.L4Type.TCP, rng.choice([64, 536, 1448]))
            lengths = [rng.randint(54, 3000)] + [rng.randint(1, 3000) for _ in range(count - 1)]
            offloads = rng.getrandbits(5) & d.TX_OFFLOAD_CMDS
            descs.append(ctx.encode())
            chain.append(offref.ChainDesc(context=ctx))
            for k, length in enumerate(lengths):
                last = k == count - 1
                descs.append(d.tx_desc(data_iova, length, last, offloads if k == 0 else 0, rng.getrandbits(16)))
                chain.append(offref.ChainDesc(length, last, offloads if k == 0 else 0))
            return descs, chain
        for k in range(count):
            last = k == count - 1
            if not last and rng.random() < 0.35:
                ctx = d.TxContext(
                    rng.choice([14, 18, 0, 13, 255, rng.getrandbits(8)]),
                    rng.choice([20, 24, 40, 60, 0, 19, rng.getrandbits(16)]),
                    rng.choice([20, 32, 60, 0, 8, rng.getrandbits(8)]),
                    rng.random() < 0.3,
                    d.L4Type(rng.randrange(3)),
                    rng.choice([0, 1, 63, 64, 536, 1448, 9000, rng.getrandbits(16)]),
                )
                raw = bytearray(ctx.encode())
                raw[10] |= rng.choice([0, 1])  # an EOP bit in a context descriptor is ignored
                descs.append(bytes(raw))
                chain.append(offref.ChainDesc(context=ctx))
                continue
            length = rng.choice([0, 40, 60, 200, 1514, 9018, 9019, 16384, rng.randrange(1, OFFLOAD_DATA // 5)])
            offloads = rng.getrandbits(5) & d.TX_OFFLOAD_CMDS
            descs.append(d.tx_desc(data_iova, length, last, offloads, rng.getrandbits(16)))
            chain.append(offref.ChainDesc(length, last, offloads))
        return descs, chain

    async def host_config(self) -> list[Act]:
        """A careless host: random writes to the VF's config space, NumVFs and System Page Size
        written while VF Enable is set. Nothing here is the guest's doing: the checks are the
        episode's invariants (nothing escapes, the victims are untouched)."""
        rng, vf, w = self.rng, self.vf, self.w
        exp = await pcicore.find_capability(vf.pdev, pci.PCI_CAP_ID_EXP)
        for _ in range(rng.randint(4, 10)):
            offset = rng.choice(
                [
                    pci.PCI_COMMAND,
                    pci.PCI_CACHE_LINE_SIZE,
                    pci.PCI_BASE_ADDRESS_0,
                    pci.PCI_INTERRUPT_LINE,
                    exp + pci.PCI_EXP_DEVCTL,
                    exp + pci.PCI_EXP_DEVCTL2,
                    rng.randrange(0, pci.PCI_CFG_SPACE_EXP_SIZE, 4),
                ]
            )
            value = rng.getrandbits(32)
            if offset == exp + pci.PCI_EXP_DEVCTL:
                value &= ~pci.PCI_EXP_DEVCTL_BCR_FLR  # FLRs are the flr_storm's business
            await vf.pdev.config_write_dword(offset, value)
        sriov = w.system.pf.sriov.state.pos
        await w.system.pf_dev.config_write_word(sriov + pci.PCI_SRIOV_NUM_VF, rng.randrange(1, 0xFFFF))
        await w.system.pf_dev.config_write_dword(sriov + pci.PCI_SRIOV_SYS_PGSIZE, rng.getrandbits(32))
        await self._settle()
        return [Act("host_config", "config_writes", False)]

    async def numvfs_change(self) -> list[Act]:
        """A careless host: SR-IOV disabled under traffic and enabled again with another NumVFs.
        The VFs vanish with their state; the PF's traffic must not notice (the episode's
        victims are the PF and the link partner)."""
        w = self.w
        await Timer(self.rng.randint(5, 30), "us")
        await w.system.disable_vfs()
        await open_vfs(w.system, self.rng.randint(NUM_VFS, TOTAL_VFS))
        return [Act("numvfs_change", "sriov_reconfigure", False)]


#: scenario kind -> the attacker method that plays it (also the coverpoint bins)
SCENARIOS = (
    "mmio",
    "descriptors",
    "ring_geometry",
    "rx_buffers",
    "mailbox_garbage",
    "mailbox_flood",
    "lock_hog",
    "flr_storm",
    "bme",
    "msix_table",
    "spoof",
    "host_config",
    "numvfs_change",
    "aer",
    "offloads",
    "migration",
)
#: scenario kinds during which the VFs may vanish: only the PF's traffic is checked
PF_ONLY = ("numvfs_change",)
