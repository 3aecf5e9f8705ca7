"""TX/RX descriptor formats and queue error codes (16-byte descriptors, little endian).

Read format (written by the driver):

    bytes 0-7   buffer address (an IOVA)
    bytes 8-9   TX: data length / RX: buffer size
    bytes 10-11 TX: command flags (EOP) / RX: 0
    bytes 12-15 0

Write-back format (the device writes every processed descriptor back in place,
buffer address unchanged):

    bytes 8-9   TX: bytes sent from this buffer / RX: bytes written to this buffer
    bytes 10-11 0
    bytes 12-13 status (DD, EOP and error bits)
    bytes 14-15 0
"""

from __future__ import annotations

import enum
import struct

from datasheet.regs import Field

DESC_SIZE = 16
WB_OFFSET = 8  # write-back covers bytes 8..15

TX_CMD_EOP = Field("EOP", 0, 1, "last buffer of a frame")

STATUS_DD = Field("DD", 0, 1, "descriptor done")
STATUS_EOP = Field("EOP", 1, 1, "RX: last buffer of the frame")
STATUS_ERR_DMA = Field("ERR_DMA", 2, 1, "a buffer DMA faulted (the queue stopped)")
STATUS_ERR_LEN = Field("ERR_LEN", 3, 1, "TX: zero-length or oversized buffer/frame, not sent")
STATUS_DROPPED = Field("DROPPED", 4, 1, "TX: the switch dropped the frame (anti-spoofing)")
STATUS_TRUNC = Field("TRUNC", 5, 1, "RX: the frame did not fit the ring's free buffers, truncated")
STATUS_FIELDS = (STATUS_DD, STATUS_EOP, STATUS_ERR_DMA, STATUS_ERR_LEN, STATUS_DROPPED, STATUS_TRUNC)

_READ = struct.Struct("<QHHI")
_WB = struct.Struct("<HHHH")


class QueueError(enum.IntEnum):
    """Value of TXDCTL/RXDCTL.ERR: why a queue stopped or refused to start."""

    NONE = 0
    BAD_RING = 1  # base not 128-byte aligned, zero, or length not a power of two in range
    BAD_TAIL = 2  # tail written beyond the ring length
    DMA_FAULT = 3  # a descriptor or buffer access failed (IOMMU fault, UR, bus mastering off)
    DISABLED_DOORBELL = 4  # a doorbell on a disabled queue (counted; shown if no other cause is)
    FN_ERROR = 5  # the function is in the error state (STATUS.FN_ERR); cleared by a function reset


def tx_desc(addr: int, length: int, eop: bool = True) -> bytes:
    return _READ.pack(addr, length, TX_CMD_EOP.put(0, int(eop)), 0)


def rx_desc(addr: int, buf_size: int) -> bytes:
    return _READ.pack(addr, buf_size, 0, 0)


def parse_read(raw: bytes) -> tuple[int, int, int]:
    """(address, length or buffer size, command flags) of a read-format descriptor."""
    addr, length, cmd, _ = _READ.unpack(raw)
    return addr, length, cmd


def writeback(length: int, status: int) -> bytes:
    """Bytes 8..15 of a completed descriptor."""
    return _WB.pack(length, 0, status, 0)


def parse_writeback(raw: bytes) -> tuple[int, int]:
    """(length, status) from a 16-byte descriptor slot after write-back."""
    length, _, status, _ = _WB.unpack(raw[WB_OFFSET:DESC_SIZE])
    return length, status
