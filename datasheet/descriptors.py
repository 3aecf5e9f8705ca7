"""TX/RX descriptor formats, offload fields and queue error codes (16-byte descriptors, little endian).

TX data descriptor (written by the driver; ``CTX`` clear):

    bytes 0-7   buffer address (an IOVA)
    bytes 8-9   data length
    bytes 10-11 command: EOP, and in a frame's first data descriptor the offload
                requests VLE, IXSM, TXSM, TSE (ignored in its other descriptors)
    bytes 12-13 VLAN tag (TCI) inserted with VLE
    bytes 14-15 0

TX context descriptor (``CTX`` set; at most one per frame, ahead of its data descriptors):

    bytes 0-7   context word: MACLEN, IPLEN, L4LEN, IPV6, L4T (header offsets of the frame)
    bytes 8-9   MSS (TSE)
    bytes 10-11 command: CTX
    bytes 12-15 0

RX descriptor (written by the driver):

    bytes 0-7   buffer address (an IOVA)
    bytes 8-9   buffer size
    bytes 10-15 0

Write-back (the device writes every processed descriptor back in place, in order, batched):

    bytes 0-7   TX: unchanged / RX: the info word (RSS hash, stripped VLAN tag, RSS type)
                in the frame's last (EOP) descriptor, 0 in its others
    bytes 8-9   TX: bytes sent from this buffer / RX: bytes written to this buffer
    bytes 10-11 0
    bytes 12-13 status (DD, EOP, error and offload bits)
    bytes 14-15 0
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from datasheet import regs
from datasheet.regs import Field

DESC_SIZE = 16
WB_OFFSET = 8  # the length and status of a write-back are bytes 8..15

# -- TX command word (bytes 10-11) ---------------------------------------------------------------
TX_CMD_EOP = Field("EOP", 0, 1, "last descriptor of a frame (ignored in a context descriptor)")
TX_CMD_VLE = Field("VLE", 1, 1, "insert the 802.1Q tag of bytes 12-13 (ignored on a port-VLAN function)")
TX_CMD_IXSM = Field("IXSM", 2, 1, "insert the IPv4 header checksum (needs a context descriptor)")
TX_CMD_TXSM = Field("TXSM", 3, 1, "insert the TCP or UDP checksum, pseudo-header included (needs a context)")
TX_CMD_TSE = Field("TSE", 4, 1, "TCP segmentation: MSS and header lengths from the context descriptor")
TX_CMD_CTX = Field("CTX", 15, 1, "this is a context descriptor")
TX_CMD_FIELDS = (TX_CMD_EOP, TX_CMD_VLE, TX_CMD_IXSM, TX_CMD_TXSM, TX_CMD_TSE, TX_CMD_CTX)
#: the offload requests, read from a frame's first data descriptor
TX_OFFLOAD_CMDS = TX_CMD_VLE.mask | TX_CMD_IXSM.mask | TX_CMD_TXSM.mask | TX_CMD_TSE.mask


class L4Type(enum.IntEnum):
    """Value of the context descriptor's L4T: the transport header after the IP header."""

    NONE = 0
    UDP = 1
    TCP = 2


# -- TX context word (bytes 0-7 of a context descriptor) ------------------------------------------
CTX_MACLEN = Field("MACLEN", 0, 8, "bytes before the IP header (at least 14)")
CTX_IPLEN = Field("IPLEN", 8, 16, "IP header length, options (IPv4) or extension headers (IPv6) included")
CTX_L4LEN = Field("L4LEN", 24, 8, "TCP header length, options included (TSE)")
CTX_IPV6 = Field("IPV6", 32, 1, "the IP header is IPv6 (else IPv4)")
CTX_L4T = Field("L4T", 33, 2, "L4Type: 0 none, 1 UDP, 2 TCP")
CTX_FIELDS = (CTX_MACLEN, CTX_IPLEN, CTX_L4LEN, CTX_IPV6, CTX_L4T)
#: bytes 8-9 of a context descriptor
CTX_MSS = Field("MSS", 0, 16, "TCP payload bytes per segment (TSE)")

# -- write-back status word (bytes 12-13) ----------------------------------------------------------
STATUS_DD = Field("DD", 0, 1, "descriptor done")
STATUS_EOP = Field("EOP", 1, 1, "RX: last buffer of the frame")
STATUS_ERR_DMA = Field("ERR_DMA", 2, 1, "a buffer DMA faulted (the queue stopped)")
STATUS_ERR_LEN = Field("ERR_LEN", 3, 1, "TX: zero-length or oversized buffer/frame, not sent")
STATUS_DROPPED = Field("DROPPED", 4, 1, "TX: the switch dropped the frame (anti-spoofing)")
STATUS_TRUNC = Field("TRUNC", 5, 1, "RX: the frame did not fit the ring's free buffers, truncated")
STATUS_ERR_OFFLOAD = Field("ERR_OFFLOAD", 6, 1, "TX: an offload request the device refuses (OffloadError), not sent")
STATUS_VP = Field("VP", 7, 1, "RX: an 802.1Q tag was stripped; its TCI is in the info word")
STATUS_IPCS = Field("IPCS", 8, 1, "RX: the IPv4 header checksum was checked")
STATUS_IPE = Field("IPE", 9, 1, "RX: ... and it is wrong")
STATUS_L4CS = Field("L4CS", 10, 1, "RX: the TCP or UDP checksum was checked")
STATUS_L4E = Field("L4E", 11, 1, "RX: ... and it is wrong")
STATUS_FIELDS = (
    STATUS_DD,
    STATUS_EOP,
    STATUS_ERR_DMA,
    STATUS_ERR_LEN,
    STATUS_DROPPED,
    STATUS_TRUNC,
    STATUS_ERR_OFFLOAD,
    STATUS_VP,
    STATUS_IPCS,
    STATUS_IPE,
    STATUS_L4CS,
    STATUS_L4E,
)
#: the RX offload results of a frame (in its EOP descriptor's status)
RX_OFFLOAD_STATUS = STATUS_VP.mask | STATUS_IPCS.mask | STATUS_IPE.mask | STATUS_L4CS.mask | STATUS_L4E.mask


class RssType(enum.IntEnum):
    """Value of the info word's RSS_TYPE: which input the hash was computed over (Microsoft
    NDIS_HASH_* types); NONE: no hash, the frame went to the default queue."""

    NONE = 0
    IPV4 = 1
    IPV4_TCP = 2
    IPV4_UDP = 3
    IPV6 = 4
    IPV6_TCP = 5
    IPV6_UDP = 6


def hena_of(hash_types: Iterable[int]) -> int:
    """FN_OFFLOAD's (and SET_RSS_HENA's) HASH_* bits of ``hash_types`` (RssType values)."""
    return sum(regs.RSS_HASH_FIELDS[t - 1].mask for t in set(hash_types) if t != RssType.NONE)


def hash_types_of(value: int) -> frozenset[RssType]:
    """The RssTypes whose HASH_* bit ``value`` (FN_OFFLOAD, SET_RSS_HENA) has set."""
    return frozenset(RssType(n + 1) for n, f in enumerate(regs.RSS_HASH_FIELDS) if f.get(value))


#: every HASH_* bit
HENA_MASK = hena_of(RssType)


# -- RX info word (bytes 0-7 of a frame's EOP write-back) ------------------------------------------
INFO_RSS_HASH = Field("RSS_HASH", 0, 32, "Toeplitz hash (0 when RSS_TYPE is NONE)")
INFO_VLAN = Field("VLAN", 32, 16, "TCI of the stripped 802.1Q tag (with VP)")
INFO_RSS_TYPE = Field("RSS_TYPE", 48, 4, "RssType of the hash")
INFO_FIELDS = (INFO_RSS_HASH, INFO_VLAN, INFO_RSS_TYPE)


class OffloadError(enum.IntEnum):
    """Why a TX frame completed with ERR_OFFLOAD (each is counted in QERR_COUNT and STAT_TX_ERRORS;
    nothing of the frame is sent)."""

    CONTEXT = 1  # a context descriptor other than the frame's first, or two of them
    NO_CONTEXT = 2  # IXSM, TXSM or TSE without a context descriptor
    NOT_PERMITTED = 3  # an offload FN_OFFLOAD does not permit the function
    OFFSETS = 4  # header offsets outside the frame, or not the kind of header asked for
    MSS = 5  # TSE with an MSS below TSO_MIN_MSS, or a segment longer than MAX_FRAME
    HEADER_SPLIT = 6  # TSE with the headers not all in the first data buffer
    TSO_LENGTH = 7  # TSE with no payload, or more than TSO_MAX_PAYLOAD


OFFLOAD_ERROR_MEANING = {
    OffloadError.CONTEXT: "a context descriptor that is not the frame's first descriptor, or a second one",
    OffloadError.NO_CONTEXT: "IXSM, TXSM or TSE asked for without a context descriptor",
    OffloadError.NOT_PERMITTED: "an offload the function's `FN_OFFLOAD` does not permit (TXCSUM, TSO, TXVLAN)",
    OffloadError.OFFSETS: "MACLEN < 14, IPLEN shorter than an IPv4 (20) / IPv6 (40) header, IXSM on IPv6, "
    "TXSM without L4T, TSE not TCP or L4LEN < 20, or a checksummed header or field beyond the frame's end",
    OffloadError.MSS: "TSE with MSS < `TSO_MIN_MSS` (0 included), or headers + MSS > `MAX_FRAME`",
    OffloadError.HEADER_SPLIT: "TSE with MACLEN + IPLEN + L4LEN beyond the first data buffer",
    OffloadError.TSO_LENGTH: "TSE with a payload (frame - headers) of 0 or more than `TSO_MAX_PAYLOAD`",
}

_READ = struct.Struct("<QHHHH")
_WB = struct.Struct("<HHHH")


class QueueError(enum.IntEnum):
    """Value of TXDCTL/RXDCTL.ERR: why a queue stopped or refused to start."""

    NONE = 0
    BAD_RING = 1  # base not 128-byte aligned, zero, or length not a power of two in range
    BAD_TAIL = 2  # tail written beyond the ring length
    DMA_FAULT = 3  # a descriptor or buffer access failed (IOMMU fault, UR, bus mastering off)
    DISABLED_DOORBELL = 4  # a doorbell on a disabled queue (counted; shown if no other cause is)
    FN_ERROR = 5  # the function is in the error state (STATUS.FN_ERR); cleared by a function reset


def tx_desc(addr: int, length: int, eop: bool = True, offloads: int = 0, vlan: int = 0) -> bytes:
    """A TX data descriptor; ``offloads`` are TX_CMD_VLE/IXSM/TXSM/TSE bits, ``vlan`` the TCI for VLE."""
    cmd = TX_CMD_EOP.put(offloads & TX_OFFLOAD_CMDS, int(eop))
    return _READ.pack(addr, length, cmd, vlan & 0xFFFF, 0)


@dataclass(frozen=True)
class TxContext:
    """The fields of a TX context descriptor."""

    maclen: int
    iplen: int
    l4len: int = 0
    ipv6: bool = False
    l4t: L4Type = L4Type.NONE
    mss: int = 0

    def encode(self) -> bytes:
        word = CTX_MACLEN.put(0, self.maclen)
        word = CTX_IPLEN.put(word, self.iplen)
        word = CTX_L4LEN.put(word, self.l4len)
        word = CTX_IPV6.put(word, int(self.ipv6))
        word = CTX_L4T.put(word, int(self.l4t))
        return _READ.pack(word, self.mss & 0xFFFF, TX_CMD_CTX.mask, 0, 0)

    @classmethod
    def decode(cls, word: int, mss: int) -> TxContext:
        """From a context descriptor's context word and MSS (any value: L4T 3 reads as NONE)."""
        l4t = CTX_L4T.get(word)
        return cls(
            CTX_MACLEN.get(word),
            CTX_IPLEN.get(word),
            CTX_L4LEN.get(word),
            bool(CTX_IPV6.get(word)),
            L4Type(l4t) if l4t in set(L4Type) else L4Type.NONE,
            mss,
        )


def rx_desc(addr: int, buf_size: int) -> bytes:
    return _READ.pack(addr, buf_size, 0, 0, 0)


def parse_read(raw: bytes) -> tuple[int, int, int, int]:
    """(bytes 0-7, bytes 8-9, command, bytes 12-13) of a read-format descriptor: for a TX data
    descriptor (address, length, command, VLAN tag), for a context descriptor (context word,
    MSS, command, 0), for an RX descriptor (address, buffer size, 0, 0)."""
    addr, length, cmd, vlan, _ = _READ.unpack(raw)
    return addr, length, cmd, vlan


def writeback(length: int, status: int) -> bytes:
    """Bytes 8..15 of a completed descriptor."""
    return _WB.pack(length, 0, status, 0)


def parse_writeback(raw: bytes) -> tuple[int, int]:
    """(length, status) from a 16-byte descriptor slot after write-back."""
    length, _, status, _ = _WB.unpack(raw[WB_OFFSET:DESC_SIZE])
    return length, status


def rx_info_word(rss_hash: int = 0, rss_type: int = RssType.NONE, vlan: int = 0) -> int:
    """Bytes 0-7 of an RX frame's EOP write-back."""
    return INFO_RSS_TYPE.put(INFO_VLAN.put(INFO_RSS_HASH.put(0, rss_hash), vlan), rss_type)


@dataclass(frozen=True)
class RxInfo:
    """What the EOP write-back of a received frame reports besides its length."""

    rss_hash: int
    rss_type: int
    vlan: int | None  # TCI of the stripped tag, None if VP is clear
    status: int

    @classmethod
    def from_writeback(cls, raw: bytes) -> RxInfo:
        word = int.from_bytes(raw[:8], "little")
        _, status = parse_writeback(raw)
        return cls(
            INFO_RSS_HASH.get(word),
            INFO_RSS_TYPE.get(word),
            INFO_VLAN.get(word) if STATUS_VP.get(status) else None,
            status,
        )

    @property
    def ip_checksum(self) -> str | None:
        """``good``, ``bad`` or None (not checked) for the IPv4 header checksum."""
        return _verdict(self.status, STATUS_IPCS, STATUS_IPE)

    @property
    def l4_checksum(self) -> str | None:
        """``good``, ``bad`` or None (not checked) for the TCP/UDP checksum."""
        return _verdict(self.status, STATUS_L4CS, STATUS_L4E)


def _verdict(status: int, checked: Field, wrong: Field) -> str | None:
    if not checked.get(status):
        return None
    return "bad" if wrong.get(status) else "good"
