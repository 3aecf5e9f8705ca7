"""The root complex's memory region on the TLP fabric: a read that is one request runs it
without a task of its own.

cocotbext-pcie's ``MemoryTlpRegion.read`` starts a task for each read request it cuts the
access into, then joins them in order; a driver's MMIO read is one request, so it paid for a
task and a join per read (40 per VF during the 256-VF enable). :class:`TlpMemoryRegion` awaits
the one request directly, with the stock request fields and the stock checks on its
completions; an access cut into several requests takes the stock path.
"""

from __future__ import annotations

from typing import Any

from cocotbext.pcie.core.region import MemoryTlpRegion
from cocotbext.pcie.core.tlp import CplStatus, TlpAttr, TlpTc, TlpType

from datasheet.pci import one_request

from .tlp import CheckedTlp


class TlpMemoryRegion(MemoryTlpRegion):
    """``MemoryTlpRegion`` whose one-request reads run in the reader's own task."""

    def _request(self, addr: int, above_4g: TlpType, below_4g: TlpType, attr: TlpAttr, tc: TlpTc) -> CheckedTlp:
        """A new memory request of the function, as the stock loop builds it (bus mastering
        checked first, with the stock exception): 64-bit addressing above 4 GiB only."""
        if not self.func.bus_master_enable:
            raise Exception("Bus mastering not enabled")
        req = CheckedTlp()
        req.fmt_type = above_4g if addr > 0xFFFFFFFF else below_4g
        req.requester_id = self.func.pcie_id
        req.attr = attr
        req.tc = tc
        return req

    async def read(
        self, addr: int, length: int, timeout: int = 0, timeout_unit: str = "ns", attr: Any = None, tc: Any = None
    ) -> bytes:
        attr = TlpAttr(0) if attr is None else attr
        tc = TlpTc.TC0 if tc is None else tc
        if not one_request(addr, length, 128 << self.cfg.max_read_request_size):
            return await super().read(addr, length, timeout, timeout_unit, attr, tc)
        req = self._request(addr, TlpType.MEM_READ_64, TlpType.MEM_READ, attr, tc)
        req.set_addr_be(addr, length)
        cpl_list = await self.func.perform_nonposted_operation(req, timeout, timeout_unit)
        data = bytearray()
        m = 0
        while m < length:  # the stock completion checks, in order
            if not cpl_list:
                raise Exception("Timeout")
            cpl = cpl_list.pop(0)
            if cpl.status != CplStatus.SC:
                raise Exception("Unsuccessful completion")
            assert cpl.byte_count + 3 + (cpl.lower_address & 3) >= cpl.length * 4
            assert cpl.byte_count == max(length - m, 1)
            d = cpl.get_data()
            offset = cpl.lower_address & 3
            data.extend(d[offset : offset + cpl.byte_count])
            m += len(d) - offset
        return bytes(data[:length])

    async def write(
        self, addr: int, data: bytes, timeout: int = 0, timeout_unit: str = "ns", attr: Any = None, tc: Any = None
    ) -> None:
        """``MemoryTlpRegion.write``; a write that is one request (not empty, within
        Max_Payload_Size, no 4 KiB crossing: the stock loop's one turn) is built the same, as a
        :class:`~fabric.tlp.CheckedTlp`."""
        attr = TlpAttr(0) if attr is None else attr
        tc = TlpTc.TC0 if tc is None else tc
        if not one_request(addr, len(data), 128 << self.cfg.max_payload_size):
            await super().write(addr, data, timeout, timeout_unit, attr, tc)
            return
        req = self._request(addr, TlpType.MEM_WRITE_64, TlpType.MEM_WRITE, attr, tc)
        req.set_addr_be_data(addr, data)
        await self.func.perform_posted_operation(req)
