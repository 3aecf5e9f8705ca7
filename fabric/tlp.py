"""TLPs whose type look-ups and checks cost a dict look-up, for the TLP fabric's links.

cocotbext-pcie's ``Tlp.fmt_type`` builds a ``TlpType`` member from ``(fmt, type)`` on every
read, and ``Tlp.check`` (run by every bridge, switch port and function a TLP passes, about
nine times per TLP) reads it several times and tests it against sets of members built on
each call, hashing each member with ``Enum.__hash__``: with 256 VFs being probed, some 19
million hash calls, 15 % of the wall time.  :class:`CheckedTlp` answers the same questions
from tables keyed by the ``(fmt, type)`` tuple, with the same results and the same messages;
a link port hands up every TLP it receives as one (:class:`fabric.link.SleepingSimPort`).
"""

from __future__ import annotations

from cocotbext.pcie.core.tlp import FcType, Tlp, TlpFmt, TlpType, tlp_type_fc_type_mapping
from cocotbext.pcie.core.utils import PcieId

#: each TlpType by its (fmt, type) value
TLP_TYPES = {t.value: t for t in TlpType}
#: flow-control class by (fmt, type)
FC_TYPES = {t.value: fc for t, fc in tlp_type_fc_type_mapping.items()}
DATA_FMTS = frozenset((TlpFmt.THREE_DW_DATA, TlpFmt.FOUR_DW_DATA))
MEM_REQUESTS = frozenset(
    t.value
    for t in (
        TlpType.MEM_READ,
        TlpType.MEM_READ_64,
        TlpType.MEM_READ_LOCKED,
        TlpType.MEM_READ_LOCKED_64,
        TlpType.MEM_WRITE,
        TlpType.MEM_WRITE_64,
    )
)
COMPLETIONS_WITH_DATA = frozenset(t.value for t in (TlpType.CPL_DATA, TlpType.CPL_LOCKED_DATA))
RESERVED_LENGTH = frozenset(
    t.value
    for t in (
        TlpType.CPL,
        TlpType.CPL_LOCKED,
        TlpType.MSG_TO_RC,
        TlpType.MSG_ADDR,
        TlpType.MSG_ID,
        TlpType.MSG_BCAST,
        TlpType.MSG_LOCAL,
        TlpType.MSG_GATHER,
    )
)


#: what ``Tlp(tlp)`` copies as it is (``th`` it does not copy: the copy's is False)
COPIED = tuple(name for name in vars(Tlp()) if name not in ("th", "data", "release_fc_cb", "ingress_port"))
#: the fields of a new ``Tlp()`` but its data (the IDs are immutable ``PcieId`` tuples, shared)
NEW_FIELDS = {name: value for name, value in vars(Tlp()).items() if name != "data"}


class CheckedTlp(Tlp):
    """A ``Tlp`` with table look-ups for its type, flow-control class and checks."""

    def __init__(self, tlp: Tlp | None = None):
        """``Tlp(tlp)``; a new one (``tlp`` None) takes a new Tlp's fields at once, without
        running the ID properties' ``PcieId`` constructors for its two zero IDs."""
        if tlp is not None:
            super().__init__(tlp)
            return
        self.__dict__.update(NEW_FIELDS)
        self.data = bytearray()

    @property
    def requester_id(self) -> PcieId:
        return self._requester_id

    @requester_id.setter
    def requester_id(self, val: PcieId | tuple[int, int, int]) -> None:
        """As ``Tlp``'s setter; a ``PcieId`` is kept as it is (an immutable tuple: ``PcieId(val)``
        would build an equal one)."""
        self._requester_id = val if type(val) is PcieId else PcieId(val)

    @property
    def completer_id(self) -> PcieId:
        return self._completer_id

    @completer_id.setter
    def completer_id(self, val: PcieId | tuple[int, int, int]) -> None:
        self._completer_id = val if type(val) is PcieId else PcieId(val)

    @classmethod
    def copy_of(cls, tlp: Tlp) -> CheckedTlp:
        """``Tlp(tlp)`` (what a link port makes of each TLP it receives), as a CheckedTlp: the
        same fields, without going through the ID properties' ``PcieId`` constructors again."""
        new = cls.__new__(cls)
        fields = tlp.__dict__
        new.__dict__.update({name: fields[name] for name in COPIED})
        new.th = False
        new.data = bytearray(tlp.data)
        new.release_fc_cb = new.ingress_port = None
        return new

    @property
    def fmt_type(self) -> TlpType:
        found = TLP_TYPES.get((self.fmt, self.type))
        return found if found is not None else TlpType((self.fmt, self.type))  # raises as Tlp's does

    @fmt_type.setter
    def fmt_type(self, val: TlpType | tuple[int, int]) -> None:
        Tlp.fmt_type.fset(self, val)

    def get_fc_type(self) -> FcType:
        return FC_TYPES[(self.fmt, self.type)]

    def is_posted(self) -> bool:
        return FC_TYPES[(self.fmt, self.type)] == FcType.P

    def is_nonposted(self) -> bool:
        return FC_TYPES[(self.fmt, self.type)] == FcType.NP

    def is_completion(self) -> bool:
        return FC_TYPES[(self.fmt, self.type)] == FcType.CPL

    def check(self) -> bool:
        """``Tlp.check``, the same tests and messages (its configuration and I/O request test
        compares a member with a set, so never fires: neither does this one)."""
        ret = True
        kind = (self.fmt, self.type)
        if self.fmt in DATA_FMTS:
            if self.length * 4 != len(self.data):
                print(f"TLP validation failed, length field does not match data: {self!r}")
                ret = False
            if 0 > self.length > 1024:
                print(f"TLP validation failed, length out of range: {self!r}")
                ret = False
        if kind in MEM_REQUESTS:
            if self.length * 4 > 0x1000 - (self.address & 0xFFF):
                print(f"TLP validation failed, request crosses 4K boundary: {self!r}")
                ret = False
        if kind in COMPLETIONS_WITH_DATA:
            if (self.byte_count + (self.lower_address & 3) + 3) < self.length * 4:
                print(f"TLP validation failed, completion byte count too small: {self!r}")
                ret = False
        if kind in RESERVED_LENGTH:
            if self.length != 0:
                print(f"TLP validation failed, length field is reserved: {self!r}")
                ret = False
        return ret

    def __repr__(self) -> str:
        return "Tlp" + super().__repr__().removeprefix(type(self).__name__)  # as the stock TLP reads
