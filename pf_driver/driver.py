"""PF driver: probe, ``sriov_configure``, mailbox service, VF policy and PCI error handlers
(the Linux ``pci_driver`` + ``ndo_set_vf_*`` + ``pci_error_handlers`` shape)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cocotb.triggers import Timer
from cocotb.utils import get_sim_time
from cocotbext.pcie.core.pci import PciDevice

import pcicore
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import hena_of
from datasheet.mailbox import Message, Offload, Opcode
from netdev import NetDev, RssConfig
from pf_driver.filters import program_function, program_vf
from pf_driver.mailbox import PfMailbox
from pf_driver.migration import PfMigration, VfMigration
from pf_driver.offloads import fn_offload_value, program_offloads, program_vf_offloads
from pf_driver.vf_info import LinkState, MddPolicy, VfInfo, VfState

if TYPE_CHECKING:
    from iommu import DmaDevice


class PfDriver:
    """Drives the NIC's Physical Function through config/MMIO only."""

    def __init__(self, pdev: PciDevice):
        self.pdev = pdev
        self.log = logging.getLogger(f"cocotb.pf_driver[{pdev.pcie_id}]")
        self.bar0 = None
        self.sriov: pcicore.Sriov | None = None  # the host's SR-IOV state, found at probe
        self.mailbox = PfMailbox(self)
        self.msix_vectors = 0
        self.link_up, self.link_speed = True, device.UPLINK_SPEED_MBPS
        rid = int(pdev.pcie_id)
        self.mac = device.permanent_mac(rid)  # the PF's own netdev MAC
        self.netdev = NetDev(self, device.PF_QUEUE_PAIRS)
        self.mdd_policy = MddPolicy()
        self.errors = 0  # times the PF itself entered the error state
        #: the AER service's calls of this driver's error handlers: (handler, what it returned)
        self.error_handler_calls: list[tuple[str, str]] = []
        #: what the PF last wrote to each function's offload registers (fn -> FN_OFFLOAD, key, table)
        self.offload_shadow: dict[int, tuple] = {}
        #: VFIO live migration of the VFs (the variant-driver role, :mod:`pf_driver.migration`)
        self.migration = PfMigration(self)

    async def probe(self) -> None:
        """Enable the device, map its BARs, check identity, enable MSI-X, init SR-IOV and the mailbox."""
        dev = self.pdev
        if (dev.vendor_id, dev.device_id) != (device.VENDOR_ID, device.PF_DEVICE_ID):
            raise pcicore.PciError(f"{dev.pcie_id}: not our PF ({dev.vendor_id:04x}:{dev.device_id:04x})")
        pcicore.pci_bind_driver(dev, self)
        await dev.enable_device()
        await dev.set_master()
        self.bar0 = dev.bar_window[device.REG_BAR]
        if self.bar0 is None:
            raise pcicore.PciError(f"{dev.pcie_id}: BAR0 not assigned")
        nic_id = await self.read_reg(regs.NIC_ID)
        if nic_id != device.NIC_ID_MAGIC:
            raise pcicore.PciError(f"{dev.pcie_id}: NIC_ID reads {nic_id:#x}")
        self.msix_vectors = await pcicore.pci_alloc_irq_vectors(dev, 1, device.PF_MSIX_VECTORS)
        self.sriov = await pcicore.pci_iov_init(dev, self.log)  # done at enumeration; idempotent
        await program_function(self, 0, self.mac)
        await self.mailbox.start()
        self.log.info(
            "probed: NIC_ID %#x, %d MSI-X vectors, TotalVFs %d", nic_id, self.msix_vectors, self.sriov.state.total_vfs
        )

    @property
    def dma(self) -> DmaDevice | None:
        """The DMA API the platform gave this function (its IOMMU domain), None if none yet."""
        return pcicore.dma_device(self.pdev)

    async def read_reg(self, reg: regs.Register, index: int = 0) -> int:
        return await self.bar0.read_dword(reg.at(index))

    async def write_reg(self, reg: regs.Register, value: int, index: int = 0) -> None:
        await self.bar0.write_dword(reg.at(index), value)

    async def write_regs(self, reg: regs.Register, values: list[int], index: int = 0) -> None:
        """Elements ``index``.. of array ``reg`` in one MMIO write (Linux ``memcpy_toio``)."""
        await self.bar0.write(reg.at(index), b"".join(v.to_bytes(4, "little") for v in values))

    async def read_regs(self, reg: regs.Register, count: int, index: int = 0) -> list[int]:
        """``count`` elements from ``index`` of array ``reg`` in one MMIO read (``memcpy_fromio``)."""
        data = await self.bar0.read(reg.at(index), 4 * count)
        return [int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4)]

    async def read_block(self, first: regs.Register, last: regs.Register) -> dict[int, int]:
        """Every dword from ``first`` through the end of ``last`` in one MMIO read (Linux
        ``memcpy_fromio``): BAR0 offset -> value."""
        data = await self.bar0.read(first.offset, last.end - first.offset)
        return {first.offset + k: int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4)}

    async def clear_block(self, taken: dict[int, int]) -> None:
        """Write 1 to clear ``taken`` (BAR0 offset -> the bits taken there) in W1C registers, in
        one MMIO write from its first offset to its last (Linux ``memcpy_toio``): the dwords
        between are written 0, which clears nothing in a W1C register."""
        first, last = min(taken), max(taken)
        data = b"".join(taken.get(offset, 0).to_bytes(4, "little") for offset in range(first, last + 4, 4))
        await self.bar0.write(first, data)

    # -- SR-IOV ----------------------------------------------------------------------------
    async def sriov_configure(self, num_vfs: int) -> int:
        """Enable ``num_vfs`` VFs (0 disables them); returns how many are enabled."""
        if self.num_vfs:
            self.mailbox.vfs_disabled()
        enabled = await self.sriov.configure(num_vfs)
        self.mailbox.vfs_enabled(enabled)
        self.migration.reset()
        return enabled

    @property
    def num_vfs(self) -> int:
        return self.sriov.state.num_vfs if self.sriov.state else 0

    @property
    def virtfns(self) -> list[PciDevice]:
        """Host view of the enabled VFs, index order, for binding VF drivers."""
        return list(self.sriov.state.virtfns) if self.sriov.state else []

    async def open(self, ring_size: int = 256) -> None:
        """ndo_open of the PF's own net device."""
        self.ring_size = ring_size
        await self.netdev.open(ring_size)

    async def configure_queue(self, queue: int, rx: bool, iova: int, size: int, buf_size: int) -> None:
        """The PF programs its own rings directly; nothing to ask."""

    @property
    def offload_caps(self) -> Offload:
        """The PF's own net device may use every offload."""
        return mbx.ALL_OFFLOADS

    async def set_offloads(self, enabled: Offload, rss: RssConfig) -> None:
        """The PF programs its own offloads directly (function 0)."""
        value = fn_offload_value(enabled, hena_of(rss.hash_types))
        await program_offloads(self, device.PF_PORT, value, rss.key, rss.table)

    async def reset(self) -> None:
        """PF software reset (CTRL.RST): VFs see RSTI; the PF's own port and queues are
        rebuilt, then RSTD is signalled to the VFs (PFRSTD)."""
        reopen = self.netdev.is_open
        if reopen:
            await self.netdev.stop()
        await self.write_reg(regs.CTRL, regs.CTRL.field("RST").mask)
        await self.read_reg(regs.STATUS)  # flush the posted write
        self.offload_shadow.clear()  # every offload register is back at its reset value
        await Timer(10, "us")
        await program_function(self, 0, self.mac)
        if reopen:
            await self.netdev.open(self.ring_size)
        await self.mailbox.restart()

    # -- VF error events (malicious driver detection) ----------------------------------------
    def set_mdd_policy(self, policy: MddPolicy) -> None:
        """The administrator's malicious-driver-detection policy (what ice exposes as the
        ``mdd-auto-reset-vf`` private flag): how many error events in what window disable a VF."""
        self.mdd_policy = policy

    async def vf_error_event(self, vf: VfInfo) -> None:
        """VF ``vf`` entered the error state: log and count it, then reset the VF, or leave it
        disabled when :attr:`mdd_policy` says it had too many events too quickly."""
        now = get_sim_time("ns")
        vf.errors += 1
        vf.error_times = [t for t in vf.error_times if now - t <= self.mdd_policy.window_ns] + [now]
        limit = self.mdd_policy.disable_after
        if vf.state is VfState.DISABLED:
            return
        if limit is not None and len(vf.error_times) >= limit:
            self.log.error(
                "VF %d: error event %d (%d within %d us): VF disabled",
                vf.index,
                vf.errors,
                len(vf.error_times),
                self.mdd_policy.window_ns // 1000,
            )
            vf.state = VfState.DISABLED
            await program_vf(self, vf)
            await program_vf_offloads(self, vf)
            return
        self.log.error("VF %d: error event %d (malicious driver detection): resetting the VF", vf.index, vf.errors)
        await self.trigger_vf_reset(vf.index)

    async def pf_error_event(self) -> None:
        """The PF itself entered the error state (STATUS.FN_ERR): log, count, reset the PF."""
        self.errors += 1
        cause = regs.FN_ERROR.field("CAUSE").get(await self.read_reg(regs.FN_ERROR))
        self.log.error("PF entered the error state (%s): resetting the PF", regs.FnError(cause).name)
        await self.reset()

    async def trigger_vf_reset(self, n: int) -> None:
        """Software reset of VF ``n`` (PF_VFRTRIG): its queues stop, its driver sees RSTD."""
        word, bit = divmod(n, 32)
        await self.write_reg(regs.PF_VFRTRIG, 1 << bit, word)

    async def reset_vf(self, n: int) -> None:
        """Re-admit VF ``n`` (e.g. one the MDD policy disabled): reset it and forget its errors."""
        vf = self.vf_info(n)
        vf.state, vf.error_times = VfState.NOT_RESET, []
        await self.trigger_vf_reset(n)

    # -- PCI error recovery (the host's AER service calls these) ---------------------------------
    def _record(self, handler: str, result: pcicore.PciErsResult | None = None) -> None:
        self.error_handler_calls.append((handler, result.value if result else ""))

    async def error_detected(self, state: pcicore.PciChannelState) -> pcicore.PciErsResult:
        """An uncorrectable error of the PF: with the channel working, check the device
        (mmio_enabled); a fatal error needs the device reset."""
        ers = pcicore.PciErsResult
        result = {
            pcicore.PciChannelState.NORMAL: ers.CAN_RECOVER,
            pcicore.PciChannelState.FROZEN: ers.NEED_RESET,
        }.get(state, ers.DISCONNECT)
        self._record(f"error_detected:{state.value}", result)
        return result

    async def mmio_enabled(self) -> pcicore.PciErsResult:
        status = await self.read_reg(regs.STATUS)
        broken = status == 0xFFFFFFFF or bool(regs.STATUS.field("FN_ERR").get(status))
        result = pcicore.PciErsResult.NEED_RESET if broken else pcicore.PciErsResult.RECOVERED
        self._record("mmio_enabled", result)
        return result

    async def slot_reset(self) -> pcicore.PciErsResult:
        """The host leaves the PF's reset to its driver (a PF FLR would take the VFs away):
        a device reset (CTRL.RST), after which the VFs redo their handshake."""
        await self.reset()
        self._record("slot_reset", pcicore.PciErsResult.RECOVERED)
        return pcicore.PciErsResult.RECOVERED

    async def resume(self) -> None:
        self._record("resume")

    async def cor_error_detected(self) -> None:
        self._record("cor_error_detected")

    # -- administrator policy (ip link set <pf> vf N ...) ------------------------------------
    def vf_info(self, n: int) -> VfInfo:
        return self.mailbox.vfs[n]

    def vf_migration(self, n: int) -> VfMigration:
        """VF ``n``'s VFIO migration state machine (what vfio-pci's variant driver exposes)."""
        return self.migration.vf(n)

    async def set_vf_mac(self, n: int, mac: bytes) -> None:
        """``vf N mac``: an administrator MAC an untrusted VF cannot override."""
        vf = self.vf_info(n)
        vf.set_admin_mac(mac)
        await program_vf(self, vf)

    async def set_vf_vlan(self, n: int, vid: int | None) -> None:
        """``vf N vlan``: a port VLAN (None removes it); VF VLAN requests are then refused."""
        self.vf_info(n).admin_vlan = vid
        await program_vf(self, self.vf_info(n))

    async def set_vf_offloads(self, n: int, allowed: Offload) -> None:
        """The administrator's offload policy for VF ``n``: it may use only ``allowed`` (GET_OFFLOADS
        says so, SET_OFFLOADS and the RSS messages asking for more are NACKed POLICY); what it
        already had beyond that is turned off at once."""
        vf = self.vf_info(n)
        vf.allowed_offloads = Offload(allowed)
        await program_vf_offloads(self, vf)

    async def set_vf_spoofchk(self, n: int, on: bool) -> None:
        self.vf_info(n).spoofchk = on
        await program_vf(self, self.vf_info(n))

    def set_vf_trust(self, n: int, on: bool) -> None:
        self.vf_info(n).trust = on

    def set_vf_link_state(self, n: int, state: LinkState) -> None:
        """``vf N state auto|enable|disable``: the VF is told its effective link."""
        vf = self.vf_info(n)
        vf.link_state = state
        self._notify_link(vf)

    def check_link(self, status: int) -> None:
        """Follow the uplink as STATUS shows it (read on PF_ICR.LSC, and when the mailbox service
        (re)starts: a reset clears PF_ICR, and with it a change not yet seen)."""
        up = bool(regs.STATUS.field("LINK_UP").get(status))
        if up != self.link_up:
            self.set_link(up, self.link_speed)

    def set_link(self, up: bool, speed_mbps: int = device.UPLINK_SPEED_MBPS) -> None:
        """The uplink changed: tell every VF whose link state follows it."""
        self.link_up, self.link_speed = up, speed_mbps
        for vf in self.mailbox.vfs:
            if vf.link_state is LinkState.AUTO:
                self._notify_link(vf)

    def _notify_link(self, vf: VfInfo) -> None:
        up = {LinkState.AUTO: self.link_up, LinkState.ENABLE: True, LinkState.DISABLE: False}[vf.link_state]
        self.mailbox.notify(vf, Message(Opcode.LINK_STATUS, [mbx.LINK_UP.put(0, int(up)), self.link_speed]))
