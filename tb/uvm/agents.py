"""Agents: a sequencer and a driver per role.  Drivers carry out :class:`NicOp` items with
the project's own driver-level calls (``pf_driver``, ``vf_driver``, ``System``), the way
an administrator, a guest or a link partner would; they never touch ``model/``.  Each
driver is given the :class:`~tb.uvm.platform.Platform` (the host's side) and the
scoreboard (to withdraw a frame the NIC refused); none reaches back into the env.

* :class:`PfAgent` -- the host: enable/disable VFs, administrator policy, PF reset,
  IOMMU attach/detach/map, its own net device.
* :class:`VfAgent` -- one guest's VF driver (agent *k* drives the *k*-th open VF):
  handshake, mailbox requests, rings, frames, FLR, software reset, raw descriptors, and
  the hostile DMA scenarios (read-only rings, write-only buffers, use after unmap, DMA
  after the host detached the domain).
* :class:`UplinkAgent` -- the link partner: frames in, link state; its monitor collects
  every frame the NIC sends out of the uplink.

Operations that reconfigure or reset ports wrap themselves in a Transition so that the
scoreboard knows which ports are in flux (see :mod:`tb.uvm.scoreboard`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import cocotb
from cocotb.triggers import Timer
from cocotb.utils import get_sim_time
from pyuvm import uvm_agent, uvm_analysis_port, uvm_driver, uvm_monitor, uvm_sequencer

import pcicore
from datasheet import descriptors as d
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import Opcode
from iommu import DMA_FROM_DEVICE, DMA_TO_DEVICE, IOMMU_READ
from iommu.vtd_format import PAGE_SIZE
from pf_driver.filters import program_function
from pf_driver.vf_info import LinkState, VfState
from tb.lib.timing import wait_until
from tb.uvm import reference as ref
from tb.uvm.items import Transition, TxFrame, UplinkFrame

#: extra quiet time after a port change before the scoreboard is strict again
SETTLE_NS = 20_000
XMIT_RETRIES = 200
PAGE = PAGE_SIZE  # host page (VT-d 4 KiB)
LARGE_PAGES = {"2M": (2 << 20, 0x3000_0000), "1G": (1 << 30, 0x4000_0000)}  # size, IOVA used


class OpDriver(uvm_driver):
    """Pulls :class:`NicOp` items and runs ``self.op_<name>(**args)``."""

    def build_phase(self):
        self.platform = None  # set by the env
        self.scoreboard = None
        self.ap_tx = uvm_analysis_port("ap_tx", self)
        self.ap_transition = uvm_analysis_port("ap_transition", self)

    async def run_phase(self):
        while True:
            item = await self.seq_item_port.get_next_item()
            try:
                item.result = await getattr(self, f"op_{item.op}")(**item.args)
            except Exception as exc:  # noqa: BLE001  (handed back to the sequence, which decides)
                item.error = exc
            self.seq_item_port.item_done()

    @asynccontextmanager
    async def transition(self, ports, why: str, settle_ns: int = SETTLE_NS):
        ports = frozenset(ports)
        self.ap_transition.write(Transition(get_sim_time("ns"), ports, True, why))
        try:
            yield
        finally:
            await Timer(settle_ns, "ns")
            self.ap_transition.write(Transition(get_sim_time("ns"), ports, False, why))

    def expect_tx(self, port: int, frame: bytes) -> None:
        self.ap_tx.write(TxFrame(get_sim_time("ns"), port, bytes(frame)))

    async def xmit(self, port: int, netdev, frame: bytes, queue: int = 0) -> bool:
        """ndo_start_xmit with NETDEV_TX_BUSY retries; the scoreboard expects the frame."""
        for _ in range(XMIT_RETRIES):
            self.expect_tx(port, frame)
            if await netdev.start_xmit(frame, queue):
                return True
            self.scoreboard.withdraw_tx(port, frame)
            await Timer(2, "us")
        return False

    async def post_raw_tx(self, vf, descs, queue: int, frames=(), settle_ns: int = 20_000) -> int:
        """Write raw descriptors into ``vf``'s TX ring ``queue`` and ring its doorbell (a hostile
        or hand-built driver); ``frames`` are the ones that must reach the switch.  Returns
        TXDCTL afterwards (ENABLE clear: the device stopped the queue)."""
        ring = vf.netdev.tx[queue]
        for frame in frames:
            self.expect_tx(device.vf_port(vf.vf_index), frame)
        await ring.post_raw(descs)
        await Timer(settle_ns, "ns")
        return await vf.read_reg(regs.TXDCTL, queue)


class PfAgentDriver(OpDriver):
    @property
    def system(self):
        return self.platform.system

    def all_ports(self):
        return set(self.platform.port_views()) | {device.PF_PORT}

    async def op_enable(self, num_vfs: int, open_vfs: int | None = None, ring_size: int | None = None):
        before_attach = self.unassigned_vf_dma if self.platform.cfg.blocked_dma else None
        async with self.transition(set(range(1 + 256)), "enable VFs"):
            await self.platform.enable(num_vfs, open_vfs, ring_size, before_attach)
        return num_vfs

    async def op_disable(self):
        async with self.transition(self.all_ports(), "disable VFs"):
            await self.platform.disable()

    async def unassigned_vf_dma(self, vf) -> int:
        """A VF no domain was assigned to programs a TX ring and rings its doorbell: the
        descriptor fetch must be blocked (root entry not present on a VF bus nobody attached
        yet, without ARI; context entry not present otherwise); the queue stops."""
        await vf.write_reg(regs.TDBAL, 0x10_0000, 0)
        await vf.write_reg(regs.TDBAH, 0, 0)
        await vf.write_reg(regs.TDLEN, device.RING_MIN_DESCS, 0)
        await vf.write_reg(regs.TXDCTL, 1, 0)
        await vf.write_reg(regs.TDT, 1, 0)
        await Timer(20, "us")
        ctl = await vf.read_reg(regs.TXDCTL, 0)
        await vf.write_reg(regs.TXDCTL, 0, 0)
        return ctl

    async def op_admin(self, what: str, vf: int, value):
        """``ip link set <pf> vf N mac|vlan|spoofchk|trust|state``."""
        pf = self.system.pf
        async with self.transition({device.vf_port(vf)}, f"admin {what}"):
            if what == "mac":
                await pf.set_vf_mac(vf, value)
            elif what == "vlan":
                await pf.set_vf_vlan(vf, value)
            elif what == "spoofchk":
                await pf.set_vf_spoofchk(vf, value)
            elif what == "trust":
                pf.set_vf_trust(vf, value)
            elif what == "state":
                pf.set_vf_link_state(vf, LinkState(value))
            else:
                raise ValueError(what)

    async def op_pf_reset(self):
        """PF reset with the VFs' traffic running: the VF drivers see RSTI/RSTD and redo
        their handshake.  The PF's own port and queues are brought back the way a full
        driver's reset path does it (down, reset, reprogram, up)."""
        platform, pf = self.platform, self.system.pf
        async with self.transition(self.all_ports(), "PF reset", settle_ns=50_000):
            before = {k: vf.resets for k, vf in enumerate(self.system.vfs)}
            if pf.netdev.is_open:
                await pf.netdev.stop()
            await pf.reset()
            await program_function(pf, 0, pf.mac)
            platform.pf_port_programmed = True
            ok = await wait_until(
                lambda: all(vf.ready and vf.resets > before[k] for k, vf in enumerate(self.system.vfs)),
                timeout_ns=60_000_000,
            )
            if not ok:
                raise RuntimeError("VF drivers did not recover from the PF reset")
            await wait_until(lambda: all(i.state is not VfState.NOT_RESET for i in pf.mailbox.vfs))
            if platform.cfg.open_pf:
                await platform.open_pf()

    async def op_attach(self, slot: int):
        return self.platform.attach(slot)

    async def op_detach(self, slot: int):
        return self.platform.detach(slot)

    async def op_pf_xmit(self, frame: bytes, queue: int = 0):
        return await self.xmit(0, self.system.pf.netdev, frame, queue)

    async def op_pf_dma_blocked(self, frame: bytes):
        """Detach the PF's context (pass-through) and transmit: the descriptor fetch must fault
        (CONTEXT_ENTRY_NOT_PRESENT, requester PF); then restore it and reopen the PF's rings."""
        pf, sys_ = self.system.pf, self.system
        rid = int(sys_.pf_dev.pcie_id)
        shadow = self.platform.dma_ref
        async with self.transition({0}, "PF DMA blocked"):
            sys_.iommu_driver.detach_device(rid)
            shadow.detach(rid)
            await self.xmit(0, pf.netdev, frame, 1)
            await Timer(20, "us")
            sys_.iommu_driver.attach_passthrough(rid)
            shadow.attach_passthrough(rid)
            await self.platform.open_pf()

    async def op_map_large(self, slot: int, page: str, frame: bytes, queue: int = 1):
        """Map a 2 MiB or 1 GiB IOMMU page into a VF's domain (read-only) and transmit a frame
        whose buffer is reached through it; unmap afterwards."""
        size, iova = LARGE_PAGES[page]
        platform, pf_dma = self.platform, self.system.pf_dma
        vf = platform.vf(slot)
        if page == "1G":
            buf = pf_dma.alloc_buffer(PAGE)
            phys, addr = 0, iova + buf.phys
            assert buf.phys + PAGE <= size, "host buffer above the first GiB"
        else:
            buf = pf_dma.alloc_buffer(size)
            phys, addr = buf.phys, iova
        buf.write(0, frame)
        vf.dma.domain.iova.reserve(iova, size)
        platform.iommu_map(slot, iova, phys, size, IOMMU_READ)
        ctl = await self.post_raw_tx(vf, [d.tx_desc(addr, len(frame))], queue, frames=[frame])
        platform.iommu_unmap(slot, iova, size)
        pf_dma.free_buffer(buf)
        return ctl

    async def op_set_eitr(self, vector: int, usec: int):
        await self.system.pf.write_reg(regs.EITR, usec, vector)

    async def op_sleep(self, ns: int):
        await Timer(ns, "ns")


class VfAgentDriver(OpDriver):
    def build_phase(self):
        super().build_phase()
        self.slot = None

    @property
    def vf(self):
        return self.platform.vf(self.slot)

    @property
    def port(self) -> int:
        return device.vf_port(self.vf.vf_index)

    async def op_xmit(self, frame: bytes, queue: int = 0):
        return await self.xmit(self.port, self.vf.netdev, frame, queue)

    async def op_request(
        self, opcode: int, payload=(), raw: bool = False, vf_index: int | None = None, transition: bool = True
    ):
        """A mailbox request (by default from this agent's VF; ``vf_index`` speaks for another,
        idle guest).  Filter-changing ones are a transition of the VF's port."""
        vf = self.vf if vf_index is None else self.platform.system.vfs[vf_index]
        port = device.vf_port(vf.vf_index)
        msg_op = opcode if raw else Opcode(opcode)
        if opcode in mbx.FILTER_OPCODES and transition:
            async with self.transition({port}, f"mailbox {opcode:#x}"):
                return await vf.request(msg_op, list(payload))
        return await vf.request(msg_op, list(payload))

    async def op_napi_pause(self, queue: int, ns: int):
        netdev = self.vf.netdev
        netdev.napi_disable(queue)
        await Timer(ns, "ns")
        netdev.napi_enable(queue)

    async def op_set_eitr(self, vector: int, usec: int):
        await self.vf.write_reg(regs.EITR, usec, vector)

    async def op_flr(self, hostile_requests=()):
        """Function Level Reset mid-traffic, then what a guest does: re-enable MSI-X, probe,
        rebuild the rings.  ``hostile_requests`` are sent between the FLR and the handshake
        (the PF must NACK them: NOT_RESET); their replies are returned."""
        vf, platform = self.vf, self.platform
        replies = []
        async with self.transition({self.port}, "VF FLR"):
            resets = vf.resets
            info = platform.vf_info(vf.vf_index)
            vf.reset_prepare()  # the guest resets its own function: it probes again itself
            await pcicore.pcie_flr(vf.pdev)
            vf.pdev.msix_enabled = False
            await vf.pdev.set_master()
            await wait_until(lambda: info.state is VfState.NOT_RESET, step_ns=2_000)
            if hostile_requests:
                await pcicore.pci_alloc_irq_vectors(vf.pdev, 1, device.VF_MSIX_VECTORS)
                for opcode, payload in hostile_requests:
                    await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
                    replies.append(await vf.request(opcode, list(payload)))
            await platform.reprobe(self.slot, resets)
        return replies

    async def op_soft_reset(self):
        """VF software reset (CTRL.RST): the PF sees a VFLR, the VF driver RSTD; it redoes the
        handshake and rebuilds its rings (the env steps in if it does not)."""
        vf = self.vf
        async with self.transition({self.port}, "VF soft reset"):
            resets = vf.resets
            await vf.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)
            await vf.read_reg(regs.STATUS)
            await self.platform.reprobe(self.slot, resets)

    async def op_raw_tx(self, descs, queue: int, frames=(), settle_ns: int = 20_000):
        """Write raw descriptors into TX ring ``queue`` and ring its doorbell (a hostile or
        hand-built driver); ``frames`` are the ones that must reach the switch."""
        return await self.post_raw_tx(self.vf, descs, queue, frames, settle_ns)

    async def op_write_reg(self, name: str, value: int, index: int = 0):
        await self.vf.write_reg(regs.by_name(name), value, index)

    async def op_read_reg(self, name: str, index: int = 0):
        return await self.vf.read_reg(regs.by_name(name), index)

    async def op_ro_ring_tx(self, frame: bytes, queue: int):
        """TX ring ``queue`` moved to memory the device may only read: the frame goes out,
        the descriptor write-back is blocked (WRITE_DENIED)."""
        vf = self.vf
        dev = vf.dma
        ring, data = dev.alloc_buffer(PAGE), dev.alloc_buffer(PAGE)
        ring_iova = dev.dma_map(ring, PAGE, DMA_TO_DEVICE)
        data_iova = dev.dma_map(data, PAGE, DMA_TO_DEVICE)
        data.write(0, frame)
        ring.write(0, d.tx_desc(data_iova, len(frame)))
        ctl = regs.TXDCTL
        vector = ctl.field("VECTOR").get(await vf.read_reg(ctl, queue))
        await vf.write_reg(ctl, 0, queue)
        await vf.write_reg(regs.TDBAL, ring_iova & 0xFFFFFFFF, queue)
        await vf.write_reg(regs.TDBAH, ring_iova >> 32, queue)
        await vf.write_reg(regs.TDLEN, device.RING_MIN_DESCS, queue)
        await vf.write_reg(ctl, ctl.field("ENABLE").put(ctl.field("VECTOR").put(0, vector), 1), queue)
        self.expect_tx(self.port, frame)
        await vf.write_reg(regs.TDT, 1, queue)
        await Timer(20, "us")
        return await vf.read_reg(ctl, queue)

    async def op_wo_buffer_tx(self, frame: bytes, queue: int):
        """A TX buffer mapped DMA_FROM_DEVICE: the device's read of it is blocked (READ_DENIED)."""
        vf = self.vf
        data = vf.dma.alloc_buffer(PAGE)
        data.write(0, frame)
        iova = vf.dma.dma_map(data, PAGE, DMA_FROM_DEVICE)
        return await self.post_raw_tx(vf, [d.tx_desc(iova, len(frame))], queue)

    async def op_map_unmap_tx(self, frame: bytes, queue: int):
        """dma_map a buffer, send from it; dma_unmap, send from it again: the second must fault."""
        vf = self.vf
        data = vf.dma.alloc_buffer(PAGE)
        data.write(0, frame)
        iova = vf.dma.dma_map(data, PAGE, DMA_TO_DEVICE)
        await self.post_raw_tx(vf, [d.tx_desc(iova, len(frame))], queue, frames=[frame])
        vf.dma.dma_unmap(iova)
        return await self.post_raw_tx(vf, [d.tx_desc(iova, len(frame))], queue)

    async def op_detached_dma(self, queue: int):
        """The host detaches the VF's domain, the VF rings a doorbell: the fetch must fault
        (CONTEXT/ROOT_ENTRY_NOT_PRESENT); then a fresh domain and a re-probe."""
        vf, platform = self.vf, self.platform
        async with self.transition({self.port}, "detached DMA"):
            resets = vf.resets
            vf.reset_prepare()  # the guest handles this reset itself (its rings' domain is gone)
            platform.detach(self.slot)
            ring = vf.netdev.tx[queue]
            await ring.post_raw([d.tx_desc(ring.data_iova, 64)])
            await Timer(20, "us")
            ctl = await vf.read_reg(regs.TXDCTL, queue)
            await vf.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)  # stop whatever is left
            await vf.read_reg(regs.STATUS)
            platform.attach(self.slot)
            await platform.reprobe(self.slot, resets, fresh_netdev=True)
        return ctl


class UplinkAgentDriver(OpDriver):
    async def op_send(self, frame: bytes):
        nic = self.platform.system.nic
        self.expect_tx(ref.UPLINK, frame)
        if not await nic.uplink.send(frame):
            self.scoreboard.withdraw_tx(ref.UPLINK, frame)
            return False
        return True

    async def op_link(self, up: bool, hold_ns: int = 0):
        nic = self.platform.system.nic
        ports = {ref.UPLINK} | set(self.platform.port_views())
        async with self.transition(ports, "uplink link change", settle_ns=50_000):
            nic.uplink.set_link(up)
            if hold_ns:
                await Timer(hold_ns, "ns")


class UplinkMonitor(uvm_monitor):
    """The link partner's receiver: every frame the NIC sent out of the uplink."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)
        self.frames = 0

    def attach(self, uplink) -> None:
        cocotb.start_soon(self._collect(uplink))

    async def _collect(self, uplink) -> None:
        while True:
            frame = await uplink.recv()
            self.frames += 1
            self.ap.write(UplinkFrame(get_sim_time("ns"), frame))


class _Agent(uvm_agent):
    driver_class = OpDriver

    def build_phase(self):
        self.seqr = uvm_sequencer("seqr", self)
        self.driver = self.driver_class("driver", self)

    def connect_phase(self):
        self.driver.seq_item_port.connect(self.seqr.seq_item_export)


class PfAgent(_Agent):
    driver_class = PfAgentDriver


class VfAgent(_Agent):
    driver_class = VfAgentDriver


class UplinkAgent(_Agent):
    driver_class = UplinkAgentDriver

    def build_phase(self):
        super().build_phase()
        self.monitor = UplinkMonitor("monitor", self)
