"""Agents: a sequencer and a driver per role.  Drivers carry out :class:`NicOp` items with
the project's own driver-level calls (``pf_driver``, ``vf_driver``, ``System``), the way
an administrator, a guest or a link partner would; they never touch ``model/``.

* :class:`PfAgent` -- the host: enable/disable VFs, administrator policy, PF reset,
  IOMMU attach/detach/map, its own net device.
* :class:`VfAgent` -- one guest's VF driver (agent *k* drives the *k*-th open VF):
  handshake, mailbox requests, rings, frames, FLR, software reset, raw descriptors.
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

from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.mailbox import Opcode
import pcicore
from pf_driver.filters import program_function
from pf_driver.vf_info import LinkState, VfState
from tb.uvm import reference as ref
from tb.uvm.items import Transition, TxFrame, UplinkFrame

#: requests whose acceptance changes the VF's switch port
FILTER_OPCODES = {Opcode.RESET, Opcode.SET_MAC, Opcode.SET_MULTICAST, Opcode.SET_VLAN, Opcode.SET_PROMISC}
#: extra quiet time after a port change before the scoreboard is strict again
SETTLE_NS = 20_000
XMIT_RETRIES = 200


async def wait_until(cond, timeout_ns: int = 50_000_000, step_ns: int = 10_000) -> bool:
    deadline = get_sim_time("ns") + timeout_ns
    while not cond():
        if get_sim_time("ns") > deadline:
            return False
        await Timer(step_ns, "ns")
    return True


class OpDriver(uvm_driver):
    """Pulls :class:`NicOp` items and runs ``self.op_<name>(**args)``."""

    def build_phase(self):
        self.env = None                      # set by the env
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
            self.env.scoreboard.withdraw_tx(port, frame)
            await Timer(2, "us")
        return False


class PfAgentDriver(OpDriver):
    @property
    def system(self):
        return self.env.system

    def all_ports(self):
        return set(self.env.port_views()) | {0}

    async def op_enable(self, num_vfs: int, open_vfs: int | None = None, ring_size: int | None = None):
        async with self.transition(set(range(1 + 256)), "enable VFs"):
            await self.env.enable(num_vfs, open_vfs, ring_size)
        return num_vfs

    async def op_disable(self):
        async with self.transition(self.all_ports(), "disable VFs"):
            await self.env.disable()

    async def op_admin(self, what: str, vf: int, value):
        """``ip link set <pf> vf N mac|vlan|spoofchk|trust|state``."""
        pf = self.system.pf
        async with self.transition({1 + vf}, f"admin {what}"):
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
        env, pf = self.env, self.system.pf
        async with self.transition(self.all_ports(), "PF reset", settle_ns=50_000):
            before = {k: vf.resets for k, vf in enumerate(self.system.vfs)}
            if pf.netdev.is_open:
                await pf.netdev.stop()
            await pf.reset()
            await program_function(pf, 0, pf.mac)
            env.pf_port_programmed = True
            ok = await wait_until(lambda: all(vf.ready and vf.resets > before[k]
                                              for k, vf in enumerate(self.system.vfs)), timeout_ns=60_000_000)
            if not ok:
                raise RuntimeError("VF drivers did not recover from the PF reset")
            await wait_until(lambda: all(i.state is not VfState.NOT_RESET for i in pf.mailbox.vfs))
            if env.cfg.open_pf:
                await env.open_pf()

    async def op_attach(self, slot: int):
        return self.env.attach(slot)

    async def op_detach(self, slot: int):
        return self.env.detach(slot)

    async def op_pf_xmit(self, frame: bytes, queue: int = 0):
        return await self.xmit(0, self.system.pf.netdev, frame, queue)

    async def op_pf_dma_blocked(self, frame: bytes):
        """Detach the PF's context (pass-through) and transmit: the descriptor fetch must fault
        (CONTEXT_ENTRY_NOT_PRESENT, requester PF); then restore it and reopen the PF's rings."""
        env, pf, sys_ = self.env, self.system.pf, self.system
        rid = int(sys_.pf_dev.pcie_id)
        async with self.transition({0}, "PF DMA blocked"):
            sys_.iommu_driver.detach_device(rid)
            await self.xmit(0, pf.netdev, frame, 1)
            await Timer(20, "us")
            sys_.iommu_driver.attach_passthrough(rid)
            await env.open_pf()

    async def op_map_large(self, slot: int, page: str, frame: bytes, queue: int = 1):
        """Map a 2 MiB or 1 GiB IOMMU page into a VF's domain (read-only) and transmit a frame
        whose buffer is reached through it; unmap afterwards."""
        return await self.env.large_page_xmit(slot, page, frame, queue)

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
        return self.env.vf(self.slot)

    @property
    def port(self) -> int:
        return 1 + self.vf.vf_index

    async def op_xmit(self, frame: bytes, queue: int = 0):
        return await self.xmit(self.port, self.vf.netdev, frame, queue)

    async def op_request(self, opcode: int, payload=(), raw: bool = False, vf_index: int | None = None,
                         transition: bool = True):
        """A mailbox request (by default from this agent's VF; ``vf_index`` speaks for another,
        idle guest).  Filter-changing ones are a transition of the VF's port."""
        vf = self.vf if vf_index is None else self.env.system.vfs[vf_index]
        port = 1 + vf.vf_index
        msg_op = opcode if raw else Opcode(opcode)
        if opcode in FILTER_OPCODES and transition:
            async with self.transition({port}, f"mailbox {opcode:#x}"):
                reply = await vf.mbx.request(msg_op, list(payload))
        else:
            reply = await vf.mbx.request(msg_op, list(payload))
        if reply.ack and opcode == Opcode.SET_MAC:
            vf.mac = mbx.words_to_mac(list(payload))
        elif reply.ack and opcode == Opcode.RESET and len(reply.payload) == 2:
            vf.mac = mbx.words_to_mac(reply.payload)
        return reply

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
        vf, env = self.vf, self.env
        replies = []
        async with self.transition({self.port}, "VF FLR"):
            resets = vf.resets
            info = env.vf_info(vf.vf_index)
            await pcicore.pcie_flr(vf.pdev)
            vf.ready = False                 # the guest reset its function: it redoes probe itself
            vf.pdev.msix_enabled = False
            await vf.pdev.set_master()
            await wait_until(lambda: info.state is VfState.NOT_RESET, step_ns=2_000)
            if hostile_requests:
                await pcicore.pci_alloc_irq_vectors(vf.pdev, 1, device.VF_MSIX_VECTORS)
                for opcode, payload in hostile_requests:
                    await Timer(mbx.MBX_RATE_REFILL_NS, "ns")
                    replies.append(await vf.mbx.request(opcode, list(payload)))
            await env.reprobe(self.slot, resets)
        return replies

    async def op_soft_reset(self):
        """VF software reset (CTRL.RST): the PF sees a VFLR, the VF driver RSTD; it redoes the
        handshake and rebuilds its rings (the env steps in if it does not)."""
        vf, env = self.vf, self.env
        async with self.transition({self.port}, "VF soft reset"):
            resets = vf.resets
            await vf.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)
            await vf.read_reg(regs.STATUS)
            await env.reprobe(self.slot, resets)

    async def op_raw_tx(self, descs, queue: int, frames=(), settle_ns: int = 20_000):
        """Write raw descriptors into TX ring ``queue`` and ring its doorbell (a hostile or
        hand-built driver); ``frames`` are the ones that must reach the switch."""
        vf = self.vf
        ring = vf.netdev.tx[queue]
        for frame in frames:
            self.expect_tx(self.port, frame)
        await ring.post_raw(descs)
        await Timer(settle_ns, "ns")
        return await vf.read_reg(regs.TXDCTL, queue)

    async def op_write_reg(self, name: str, value: int, index: int = 0):
        await self.vf.write_reg(regs.by_name(name), value, index)

    async def op_read_reg(self, name: str, index: int = 0):
        return await self.vf.read_reg(regs.by_name(name), index)

    async def op_ro_ring_tx(self, frame: bytes, queue: int):
        """TX ring ``queue`` moved to memory the device may only read: the frame goes out,
        the descriptor write-back is blocked (WRITE_DENIED)."""
        return await self.env.read_only_ring_xmit(self.slot, frame, queue, self)

    async def op_wo_buffer_tx(self, frame: bytes, queue: int):
        """A TX buffer mapped DMA_FROM_DEVICE: the device's read of it is blocked (READ_DENIED)."""
        return await self.env.write_only_buffer_xmit(self.slot, frame, queue, self)

    async def op_map_unmap_tx(self, frame: bytes, queue: int):
        """dma_map a buffer, send from it; dma_unmap, send from it again: the second must fault."""
        return await self.env.map_unmap_xmit(self.slot, frame, queue, self)

    async def op_detached_dma(self, queue: int):
        """The host detaches the VF's domain, the VF rings a doorbell: the fetch must fault
        (CONTEXT/ROOT_ENTRY_NOT_PRESENT); then a fresh domain and a re-probe."""
        return await self.env.detached_xmit(self.slot, queue, self)


class UplinkAgentDriver(OpDriver):
    async def op_send(self, frame: bytes):
        nic = self.env.system.nic
        self.expect_tx(ref.UPLINK, frame)
        if not await nic.uplink.send(frame):
            self.env.scoreboard.withdraw_tx(ref.UPLINK, frame)
            return False
        return True

    async def op_link(self, up: bool, hold_ns: int = 0):
        nic, env = self.env.system.nic, self.env
        async with self.transition({ref.UPLINK} | set(env.port_views()), "uplink link change", settle_ns=50_000):
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
