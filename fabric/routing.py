"""The bridges' TLP routing decisions, with the TLP's kind looked up by its ``(fmt, type)``.

cocotbext-pcie's ``Function.match_tlp`` (is this TLP for the bridge's own function?) and
``Bridge.match_tlp_secondary`` (does it belong below the bridge?) run for every TLP at every
bridge and switch port it meets, several times per TLP on its way; each builds a ``TlpType``
member (``Tlp.fmt_type``) and tests it against sets of members made on each call, hashing
each with ``Enum.__hash__`` (about 1.4 million hash calls while 64 VFs are enabled and
probed).  :class:`TableRouting` answers the same questions, with the same results and the
same exceptions for TLP types the stock methods reject, from one table; the root ports
(:class:`fabric.rc.FabricRootPort`) and the root complex's host bridge use it.
"""

from __future__ import annotations

from typing import Any

from cocotbext.pcie.core.bridge import Bridge, HostBridge
from cocotbext.pcie.core.tlp import TlpType
from cocotbext.pcie.core.utils import PcieId

# what a bridge does with a TLP of each kind (PCIe 6.0 §7.5.1.3, the stock methods' order)
CFG0, CFG1, CPL, MSG_ID, IO, MEM, TO_RC, BCAST, LOCAL, GATHER = range(10)

_KINDS = {
    CFG0: (TlpType.CFG_READ_0, TlpType.CFG_WRITE_0),
    CFG1: (TlpType.CFG_READ_1, TlpType.CFG_WRITE_1),
    CPL: (TlpType.CPL, TlpType.CPL_DATA, TlpType.CPL_LOCKED, TlpType.CPL_LOCKED_DATA),
    MSG_ID: (TlpType.MSG_ID, TlpType.MSG_DATA_ID),
    IO: (TlpType.IO_READ, TlpType.IO_WRITE),
    MEM: (TlpType.MEM_READ, TlpType.MEM_READ_64, TlpType.MEM_WRITE, TlpType.MEM_WRITE_64),
    TO_RC: (TlpType.MSG_TO_RC, TlpType.MSG_DATA_TO_RC),
    BCAST: (TlpType.MSG_BCAST, TlpType.MSG_DATA_BCAST),
    LOCAL: (TlpType.MSG_LOCAL, TlpType.MSG_DATA_LOCAL),
    GATHER: (TlpType.MSG_GATHER, TlpType.MSG_DATA_GATHER),
}
#: the routing kind of each (fmt, type); a type absent here is one the stock methods reject
KIND = {t.value: kind for kind, types in _KINDS.items() for t in types}
NO_ID = PcieId(0, 0, 0)


class TableRouting:
    """``match_tlp`` and ``match_tlp_secondary`` of a cocotbext-pcie bridge, by table look-up."""

    def match_tlp(self, tlp: Any) -> bool:
        """``Function.match_tlp``: the TLP is for this bridge's own function."""
        kind = KIND.get((tlp.fmt, tlp.type))
        if kind == CFG0:
            cid = tlp.completer_id
            return self.device_num == cid.device and self.function_num == cid.function
        if kind == CFG1:
            return False
        if kind == CPL:
            return self.pcie_id == tlp.requester_id
        if kind == IO:
            return bool(self.match_bar(tlp.address, True))
        if kind == MEM:
            return bool(self.match_bar(tlp.address))
        raise Exception("TODO")  # the stock match_tlp's own exception, text included, for a type it cannot match

    def match_tlp_secondary(self, tlp: Any) -> bool:
        """``Bridge.match_tlp_secondary``: the TLP belongs to the bridge's secondary side."""
        kind = KIND.get((tlp.fmt, tlp.type))
        if kind == MEM:
            address = tlp.address
            return (
                self.mem_base <= address <= self.mem_limit
                or self.prefetchable_mem_base <= address <= self.prefetchable_mem_limit
            )
        if kind == CPL:
            rid = tlp.requester_id
            return self.sec_bus_num <= rid.bus <= self.sub_bus_num and rid != NO_ID
        if kind == CFG1 or kind == MSG_ID:
            cid = tlp.completer_id
            return self.sec_bus_num <= cid.bus <= self.sub_bus_num and cid != NO_ID
        if kind == IO:
            return self.io_base <= tlp.address <= self.io_limit
        if kind == BCAST:
            return True
        if kind is None:
            raise Exception("Unknown/invalid packet type")
        return False  # CFG0, TO_RC, LOCAL, GATHER


class TableHostBridge(TableRouting, HostBridge):
    """The root complex's host bridge with :class:`TableRouting`."""


def use_table_routing(bridge: Bridge) -> None:
    """Give the stock host bridge ``bridge`` (built by cocotbext-pcie's ``RootComplex``)
    :class:`TableRouting`: the same object, its two match methods looked up in a table."""
    if type(bridge) is HostBridge:
        bridge.__class__ = TableHostBridge
