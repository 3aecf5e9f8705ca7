"""MSI-X table and Pending Bit Array of one function, served from its MSI-X BAR.

The capability registers (Enable, Function Mask) live in the function's config space
(:class:`model.pcie.caps.NicMsixCapability`); this is what a device implements behind
them (PCIe Base 6.0 §6.1.4, §7.7.2): a table of {address, data, vector control}
entries, the PBA, per-vector masking, and delivery of pending messages when a vector
or the function is unmasked.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from datasheet import device, pci
from model import events as ev

if TYPE_CHECKING:
    from model.pcie.caps.msix import NicMsixCapability

SendMessage = Callable[[int, int], Awaitable[None]]  # (address, data)

ENTRY = pci.PCI_MSIX_ENTRY_SIZE


class MsixTable:
    """Table + PBA of one function; :meth:`signal` raises an interrupt.

    A message is sent only while MSI-X is enabled, neither the vector nor the function
    is masked, and the function may master the bus (Command.Bus Master Enable; a
    function with BME clear issues no memory request, and an MSI-X message is one). A
    masked vector or a function with BME clear gets its pending bit set instead, and
    the message goes out when the mask is cleared or BME is set again (:meth:`deliver_pending`).
    With MSI-X disabled the event is dropped (a VF has no INTx to fall back on).
    """

    def __init__(
        self,
        fn: int,
        cap: NicMsixCapability,
        send: SendMessage,
        bus_master: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        events: ev.EventBus,
        log: logging.Logger,
        on_bad_access: Callable[[int, str, bool], None],
    ):
        self.fn = fn
        self.cap = cap
        self.num_vectors = cap.msix_table_size + 1
        self.send = send
        self.bus_master = bus_master
        self.spawn = spawn
        self.log = log
        self.table = bytearray(self.num_vectors * ENTRY)
        self.pending = 0
        self.sent = [0] * self.num_vectors  # messages delivered per vector
        self._interrupt = events.topic(ev.Interrupt)
        self.on_bad_access = on_bad_access  # (offset, what, read_only) -> the function's ERR_*
        self.stopped = False  # migration STOP: every message is held (pending) until RUNNING
        self.reset()

    def reset(self) -> None:
        """Reset state: every vector masked, nothing pending (§7.7.2.4)."""
        self.table[:] = bytes(len(self.table))
        for v in range(self.num_vectors):
            self._set_ctrl(v, pci.PCI_MSIX_ENTRY_CTRL_MASKBIT)
        self.pending = 0
        self.stopped = False
        self.cap.reset()

    # -- entry helpers ---------------------------------------------------------
    def _word(self, vector: int, field: int) -> int:
        return struct.unpack_from("<L", self.table, vector * ENTRY + field)[0]

    def _set_ctrl(self, vector: int, value: int) -> None:
        struct.pack_into("<L", self.table, vector * ENTRY + pci.PCI_MSIX_ENTRY_VECTOR_CTRL, value)

    def masked(self, vector: int) -> bool:
        ctrl = self._word(vector, pci.PCI_MSIX_ENTRY_VECTOR_CTRL)
        return bool(self.cap.msix_function_mask or ctrl & pci.PCI_MSIX_ENTRY_CTRL_MASKBIT)

    def message(self, vector: int) -> tuple[int, int]:
        lo = self._word(vector, pci.PCI_MSIX_ENTRY_LOWER_ADDR) & ~0x3
        hi = self._word(vector, pci.PCI_MSIX_ENTRY_UPPER_ADDR)
        return (hi << 32) | lo, self._word(vector, pci.PCI_MSIX_ENTRY_DATA)

    # -- interrupt generation --------------------------------------------------
    def _outcome(self, vector: int, outcome: str, why: str = "") -> str:
        if self._interrupt:
            self._interrupt.emit(ev.Interrupt(self.fn, vector, outcome, why))
        return outcome

    def signal(self, vector: int) -> str:
        """Signal ``vector``: returns ``sent``, ``held`` (pending bit set) or ``dropped``."""
        if not 0 <= vector < self.num_vectors:
            self.log.error("MSI-X vector %d out of range (table size %d): dropped", vector, self.num_vectors)
            return self._outcome(vector, "dropped", "vector out of range")
        if not self.cap.msix_enable:
            self.log.debug("MSI-X disabled: vector %d dropped", vector)
            return self._outcome(vector, "dropped", "MSI-X disabled")
        if self.masked(vector):
            self.pending |= 1 << vector
            return self._outcome(vector, "held", "masked")
        if self.stopped:
            self.pending |= 1 << vector
            return self._outcome(vector, "held", "migration stop")
        if not self.bus_master():
            self.pending |= 1 << vector
            return self._outcome(vector, "held", "bus mastering disabled")
        self.pending &= ~(1 << vector)
        self.spawn(self._send(vector))
        return self._outcome(vector, "sent")

    async def _send(self, vector: int) -> None:
        addr, data = self.message(vector)
        self.sent[vector] += 1
        try:
            await self.send(addr, data)
        except Exception as exc:  # noqa: BLE001 -- e.g. BME cleared while the message waited for the link
            self.sent[vector] -= 1
            self.pending |= 1 << vector
            self.log.warning("MSI-X vector %d not sent (%s): pending", vector, exc)

    def deliver_pending(self) -> None:
        """Send every pending message that is now allowed (unmask, enable, BME set)."""
        if not (self.pending and self.cap.msix_enable and self.bus_master()) or self.stopped:
            return
        for v in range(self.num_vectors):
            if self.pending >> v & 1 and not self.masked(v):
                self.signal(v)

    # -- live migration -------------------------------------------------------------
    def save(self) -> list[int]:
        """The MSIX section (datasheet.migration): every entry's four dwords, then the PBA."""
        words = [self.num_vectors]
        words += [self._word(v, 4 * k) for v in range(self.num_vectors) for k in range(4)]
        return [*words, self.pending & 0xFFFFFFFF, self.pending >> 32 & 0xFFFFFFFF]

    def load(self, words: list[int]) -> None:
        """Apply an MSIX section: each Vector Control and the PBA. Message Address and Data stay
        as the destination's host programmed them: they name the host's interrupt (its
        remapping entry, the requester it validates), which the VMM sets up on each side
        (VFIO_DEVICE_SET_IRQS); pending messages go out once the function runs again."""
        for v in range(self.num_vectors):
            self._set_ctrl(v, words[1 + 4 * v + 3] & pci.PCI_MSIX_ENTRY_CTRL_MASKBIT)
        pba = 1 + 4 * self.num_vectors
        self.pending = (words[pba] | words[pba + 1] << 32) & ((1 << self.num_vectors) - 1)

    # -- BAR access -------------------------------------------------------------
    def _pba_bytes(self) -> bytes:
        size = ((self.num_vectors + 63) // 64) * 8
        return self.pending.to_bytes(size, "little")

    def read(self, offset: int, length: int) -> bytes:
        t0, p0 = device.MSIX_TABLE_OFFSET, device.MSIX_PBA_OFFSET
        if t0 <= offset and offset + length <= t0 + len(self.table):
            return bytes(self.table[offset - t0 : offset - t0 + length])
        pba = self._pba_bytes()
        if p0 <= offset and offset + length <= p0 + len(pba):
            return pba[offset - p0 : offset - p0 + length]
        self.on_bad_access(offset, "MSI-X BAR read outside the table and PBA", False)
        return bytes(length)

    def write(self, offset: int, data: bytes) -> None:
        t0, p0 = device.MSIX_TABLE_OFFSET, device.MSIX_PBA_OFFSET
        if not (t0 <= offset and offset + len(data) <= t0 + len(self.table)):
            in_pba = p0 <= offset < p0 + len(self._pba_bytes())
            self.on_bad_access(
                offset,
                "MSI-X BAR write to the read-only PBA" if in_pba else "MSI-X BAR write outside the table",
                in_pba,
            )
            return
        start = offset - t0
        self.table[start : start + len(data)] = data
        first, last = start // ENTRY, (start + len(data) - 1) // ENTRY
        for v in range(first, last + 1):
            ctrl = self._word(v, pci.PCI_MSIX_ENTRY_VECTOR_CTRL)
            self._set_ctrl(v, ctrl & pci.PCI_MSIX_ENTRY_CTRL_MASKBIT)  # other bits reserved
        self.deliver_pending()
