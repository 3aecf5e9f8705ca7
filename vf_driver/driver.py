"""VF driver: probe (identity, MSI-X, mailbox reset handshake, API and offload negotiation), link
notifications, offloads through the mailbox, recovery when the PF resets (RSTI, then RSTD),
and the PCI error handlers the host's AER service calls (``struct pci_error_handlers``,
after ixgbevf/iavf)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import cocotb
from cocotb.triggers import Timer
from cocotbext.pcie.core.pci import PciDevice

import pcicore
from datasheet import device, regs
from datasheet import mailbox as mbx
from datasheet.descriptors import hena_of
from datasheet.mailbox import Message, Offload, Opcode
from datasheet.regs import reta_words, rss_key_words
from netdev import NetDev, RssConfig, TxOffload
from vf_driver.mailbox import MailboxTimeout, VfMailbox

if TYPE_CHECKING:
    from iommu import DmaDevice

#: how long probe waits for RSTD (the PF may still be initialising)
RESET_WAIT_NS = 20_000_000
#: NIC_ID, VERSION and FUNC_INFO are contiguous: the probe reads them in one access (``memcpy_fromio``)
ID_DWORDS = (regs.FUNC_INFO.end - regs.NIC_ID.offset) // 4
FUNC_INFO_AT = (regs.FUNC_INFO.offset - regs.NIC_ID.offset) // 4


class VfError(Exception):
    """The PF refused or did not answer a step the driver cannot do without."""


class VfDriver:
    """Drives one Virtual Function through its own config space and BARs only."""

    def __init__(self, pdev: PciDevice, api_version: tuple[int, int] = mbx.API_VERSION):
        """``api_version``: the mailbox API this driver speaks (an older one works without offloads)."""
        self.pdev = pdev
        self.speaks = api_version
        self.log = logging.getLogger(f"cocotb.vf_driver[{pdev.pcie_id}]")
        self.bar0 = None
        self.vf_index = None
        self.msix_vectors = 0
        self.mbx = VfMailbox(self)
        self.ready = False
        self.mac = b""
        self.api_version: tuple[int, int] | None = None
        self.offload_caps = Offload(0)  # what GET_OFFLOADS says the PF allows
        self.num_tx_queues = self.num_rx_queues = self.default_queue = 0
        self.link_up: bool | None = None
        self.link_speed = 0
        self.link_events: list[tuple[bool, int]] = []
        self.resets = 0
        self.removed = False  # unbound: every further register access fails with DeviceGone
        self._recovering = None
        self.netdev = None
        #: the AER service's calls of this driver's error handlers: (handler, what it returned)
        self.error_handler_calls: list[tuple[str, str]] = []
        self._reopen = False

    async def probe(self) -> None:
        dev = self.pdev
        if dev.device_id != device.VF_DEVICE_ID:
            raise pcicore.PciError(f"{dev.pcie_id}: not our VF (device {dev.device_id:04x})")
        pcicore.pci_bind_driver(dev, self)
        await dev.set_master()
        self.bar0 = dev.bar_window[device.REG_BAR]
        ids = await self.read_regs(regs.NIC_ID, ID_DWORDS)
        nic_id, info = ids[0], ids[FUNC_INFO_AT]
        if nic_id != device.NIC_ID_MAGIC:
            raise pcicore.PciError(f"{dev.pcie_id}: NIC_ID reads {nic_id:#x}")
        if not regs.FUNC_INFO.field("IS_VF").get(info):
            raise pcicore.PciError(f"{dev.pcie_id}: FUNC_INFO says this is not a VF")
        self.vf_index = regs.FUNC_INFO.field("VF_INDEX").get(info)
        if not dev.msix_enabled:
            self.msix_vectors = await pcicore.pci_alloc_irq_vectors(dev, 1, device.VF_MSIX_VECTORS)
            self.mbx.start()
        await self.handshake()
        self.log.info("probed VF %d, MAC %s, API %s", self.vf_index, mbx.mac_str(self.mac), self.api_version)

    def vmm_resume(self, pdev: PciDevice) -> None:
        """The guest continues after a live migration: the VMM now backs this guest's device with
        ``pdev``, another host's VF holding the migrated state, and moved the guest's memory
        under the same IOVAs. Not a Linux driver entry point: the guest is only paused and
        resumed (its vCPUs stop and go on), so the driver keeps everything -- rings, buffers,
        queue state, MAC, negotiated API -- and no re-probe happens; what changes is what its
        register accesses and its interrupts reach, which the VMM remaps (QEMU's vfio-pci maps
        the new VF's BARs into the guest and routes its MSI-X vectors to the guest's)."""
        pcicore.pci_unbind_driver(self.pdev, self)
        self.pdev = pdev
        self.bar0 = pdev.bar_window[device.REG_BAR]
        pcicore.pci_bind_driver(pdev, self)

    # -- registers (a removed VF reads all ones, as on a real bus) ----------------------------
    @property
    def dma(self) -> DmaDevice | None:
        """The DMA API the platform gave this function (its IOMMU domain), None if none yet."""
        return pcicore.dma_device(self.pdev)

    async def read_reg(self, reg: regs.Register, index: int = 0) -> int:
        try:
            return await self.bar0.read_dword(reg.at(index))
        except Exception:  # noqa: BLE001 -- cocotbext raises on a UR completion
            return 0xFFFFFFFF

    async def write_reg(self, reg: regs.Register, value: int, index: int = 0) -> None:
        await self.bar0.write_dword(reg.at(index), value)

    async def write_regs(self, reg: regs.Register, values: list[int], index: int = 0) -> None:
        """Elements ``index``.. of array ``reg`` in one MMIO write (Linux ``memcpy_toio``)."""
        await self.bar0.write(reg.at(index), b"".join(v.to_bytes(4, "little") for v in values))

    async def read_regs(self, reg: regs.Register, count: int, index: int = 0) -> list[int]:
        """``count`` dwords from element ``index`` of ``reg`` on (its elements, or the registers
        that follow it) in one MMIO read; all ones if the read fails, as one register's would."""
        try:
            data = await self.bar0.read(reg.at(index), 4 * count)
        except Exception:  # noqa: BLE001 -- cocotbext raises on a UR completion
            return [0xFFFFFFFF] * count
        return [int.from_bytes(data[k : k + 4], "little") for k in range(0, len(data), 4)]

    # -- mailbox protocol --------------------------------------------------------------------
    async def request(self, opcode: Opcode | int, payload: list[int] | None = None) -> Message:
        """One mailbox request; an ACKed SET_MAC or RESET updates the driver's MAC."""
        reply = await self.mbx.request(opcode, payload)
        if reply.ack and opcode == Opcode.SET_MAC and payload and len(payload) == 2:
            self.mac = mbx.words_to_mac(payload)
        elif reply.ack and opcode == Opcode.RESET and len(reply.payload) == 2:
            self.mac = mbx.words_to_mac(reply.payload)
        return reply

    async def _must(self, opcode: Opcode, payload: list[int] | None = None) -> Message:
        """A request the driver cannot do without: back off and retry when rate limited."""
        for _ in range(mbx.MBX_RETRIES):
            reply = await self.request(opcode, payload)
            if not (reply.nack and reply.payload[:1] == [mbx.MbxError.RATE_LIMITED]):
                break
            await Timer(mbx.MBX_RATE_BURST * mbx.MBX_RATE_REFILL_NS, "ns")
        if not reply.ack:
            raise VfError(f"{opcode.name} refused: {mbx.MbxError(reply.payload[0]).name}")
        return reply

    async def handshake(self) -> None:
        """Wait RSTD, RESET (MAC + CTS), API negotiation, queue allotment, offloads the PF allows
        (igbvf/iavf order)."""
        self.ready = False
        if not await self.mbx.wait_for("RSTD", RESET_WAIT_NS):
            raise VfError(f"{self.pdev.pcie_id}: no RSTD from the PF (RSTI={self.mbx.rsti})")
        reply = await self._must(Opcode.RESET)
        if not reply.cts or len(reply.payload) != 2:
            raise VfError("RESET reply without CTS or MAC")
        self.mac = mbx.words_to_mac(reply.payload)
        major, minor = self.speaks
        reply = await self._must(Opcode.API_NEGOTIATE, [major << 16 | minor])
        self.api_version = (reply.payload[0] >> 16, reply.payload[0] & 0xFFFF)
        reply = await self._must(Opcode.GET_QUEUES)
        self.num_tx_queues, self.num_rx_queues, self.default_queue = reply.payload[:3]
        self.offload_caps = Offload(0)
        if self.api_version >= mbx.OFFLOADS_API:
            reply = await self._must(Opcode.GET_OFFLOADS)
            self.offload_caps = Offload(reply.payload[0] & mbx.ALL_OFFLOADS)
        self.ready = True

    # -- net device ----------------------------------------------------------------------
    async def open(self, ring_size: int = 256, num_queues: int | None = None) -> None:
        """ndo_open: rings from this VF's DMA domain, validated by the PF, then enabled."""
        if not self.ready:
            raise VfError("open before the reset handshake completed")
        if self.dma is None:
            raise VfError("no DMA domain attached to this VF")
        self.ring_size = ring_size
        self.netdev = NetDev(self, self.num_tx_queues, first_vector=device.VF_MBX_VECTOR + 1)
        await self.netdev.open(ring_size, num_queues=num_queues)

    async def configure_queue(self, queue: int, rx: bool, iova: int, size: int, buf_size: int) -> None:
        payload = [mbx.QCFG_RX.put(queue, int(rx)), iova & 0xFFFFFFFF, iova >> 32, size, buf_size if rx else 0]
        await self._must(Opcode.CONFIG_QUEUES, payload)

    async def set_offloads(self, enabled: Offload, rss: RssConfig) -> None:
        """Ask the PF for ``enabled`` offloads with RSS parameters ``rss`` (its net device's
        ``set_features`` / ``set_rxfh``); raises VfError if the PF refuses."""
        if enabled & Offload.RSS:
            await self._must(Opcode.CONFIG_RSS_KEY, rss_key_words(rss.key))
            await self._must(Opcode.CONFIG_RSS_LUT, reta_words(list(rss.table)))
            await self._must(Opcode.SET_RSS_HENA, [hena_of(rss.hash_types)])
        await self._must(Opcode.SET_OFFLOADS, [int(enabled)])

    async def stop(self) -> None:
        if self.netdev is not None:
            await self.netdev.stop()

    async def start_xmit(
        self, frame: bytes, queue: int = 0, offload: TxOffload | None = None, more: bool = False
    ) -> bool:
        return await self.netdev.start_xmit(frame, queue, offload, more)

    def reset_prepare(self) -> None:
        """Linux ``pci_error_handlers.reset_prepare``: someone else is about to reset the
        function (an FLR, a domain change) and will probe again; do not recover on our own."""
        self.ready = False

    @property
    def recovering(self) -> bool:
        """A reset was seen and the driver is redoing its handshake and rings."""
        return self._recovering is not None

    async def wait_recovered(self) -> None:
        """Return once a recovery in progress (if any) has finished, successfully or not."""
        if self._recovering is not None:
            await self._recovering

    async def remove(self) -> None:
        """Unbind from the VF (Linux ``.remove``): the net device stops, a recovery in progress
        ends at its next register access, and nothing of this driver touches the VF again."""
        self.removed = True
        self.ready = False
        if self.netdev is not None:
            self.netdev.is_open = False
        pcicore.pci_unbind_driver(self.pdev, self)
        await self.wait_recovered()

    # -- PCI error recovery (the host's AER service calls these) ---------------------------------
    def _record(self, handler: str, result: pcicore.PciErsResult | None = None) -> None:
        self.error_handler_calls.append((handler, result.value if result else ""))

    def _prepare_reset(self) -> None:
        """The function will be reset under us: stop using it until slot_reset."""
        self.ready = False
        self._reopen = self.netdev is not None and self.netdev.is_open
        if self.netdev is not None:
            self.netdev.is_open = False

    async def error_detected(self, state: pcicore.PciChannelState) -> pcicore.PciErsResult:
        """An uncorrectable error of this VF: with the channel working, see whether MMIO still
        shows a healthy function (mmio_enabled); a fatal one needs a reset."""
        ers = pcicore.PciErsResult
        if state is pcicore.PciChannelState.PERM_FAILURE or self.removed:
            self.ready = False
            result = ers.DISCONNECT
        elif state is pcicore.PciChannelState.FROZEN:
            self._prepare_reset()
            result = ers.NEED_RESET
        else:
            result = ers.CAN_RECOVER
        self._record(f"error_detected:{state.value}", result)
        return result

    async def mmio_enabled(self) -> pcicore.PciErsResult:
        """Registers reading all ones (gone, or not in D0), the function's error state, or a
        queue the device stopped with an error: the VF needs a reset; else it recovered."""
        status = await self.read_reg(regs.STATUS)
        broken = status == 0xFFFFFFFF or bool(regs.STATUS.field("FN_ERR").get(status))
        if not broken and self.netdev is not None and self.netdev.is_open:
            for q in range(self.netdev.num_queues):
                for reg in (regs.TXDCTL, regs.RXDCTL):
                    broken |= bool(regs.TXDCTL.field("ERR").get(await self.read_reg(reg, q)))
        result = pcicore.PciErsResult.NEED_RESET if broken else pcicore.PciErsResult.RECOVERED
        if broken:
            self._prepare_reset()
        self._record("mmio_enabled", result)
        return result

    async def slot_reset(self) -> pcicore.PciErsResult:
        """The host reset the VF (FLR; configuration restored, vectors freed): bring it up again,
        bus mastering, vectors, the reset handshake with the PF."""
        await self.wait_recovered()
        if self.netdev is not None:
            self.netdev.vectors_freed()
        try:
            await self.probe()
            result = pcicore.PciErsResult.RECOVERED
        except (pcicore.PciError, VfError, MailboxTimeout) as exc:
            self.log.error("slot_reset: %s", exc)
            result = pcicore.PciErsResult.DISCONNECT
        self._record("slot_reset", result)
        return result

    async def resume(self) -> None:
        """Traffic may flow again: the rings a reset stopped are rebuilt."""
        if self._reopen and self.netdev is not None:
            self._reopen = False
            await self.netdev.stop()
            await self.netdev.open(self.ring_size)
        self._record("resume")

    async def cor_error_detected(self) -> None:
        """A correctable (or Advisory Non-Fatal) error was reported: nothing to recover."""
        self._record("cor_error_detected")

    def on_notification(self, msg: Message) -> None:
        if msg.opcode == Opcode.LINK_STATUS and len(msg.payload) == 2:
            self.link_up = bool(mbx.LINK_UP.get(msg.payload[0]))
            self.link_speed = msg.payload[1]
            self.link_events.append((self.link_up, self.link_speed))
            self.log.info("link %s, %d Mb/s", "up" if self.link_up else "down", self.link_speed)
        else:
            self.log.warning("unexpected PF message %#x", msg.opcode)

    def check_reset(self) -> None:
        """After probe, RSTI or RSTD means the PF (or an FLR) reset us: redo the handshake."""
        if self.ready and self._recovering is None and (self.mbx.rsti or self.mbx.bits & self.mbx_rstd):
            self.ready = False
            self._recovering = cocotb.start_soon(self._recover())

    mbx_rstd = regs.VF_MAILBOX.field("RSTD").mask

    async def _recover(self) -> None:
        try:
            reopen = self.netdev is not None and self.netdev.is_open
            await self.handshake()
            if reopen:  # the reset stopped the queues: rebuild them
                await self.netdev.stop()
                await self.netdev.open(self.ring_size)
            self.resets += 1
            self.log.info("recovered after reset")
        except (VfError, MailboxTimeout) as exc:
            self.log.warning("recovery failed: %s", exc)
        finally:
            self._recovering = None
