"""A classic libpcap writer for the frames that cross the embedded switch.

File format: global header (magic 0xa1b2c3d4, version 2.4, snaplen 65535,
linktype 1 = Ethernet), then one record per frame stamped with the simulation
time in seconds + microseconds. Frames in a simulation are often nanoseconds
apart: ``nanosecond=True`` writes the nanosecond variant instead (magic
0xa1b23c4d, fraction in ns), which Wireshark and scapy read too. Every record is flushed at once, so a capture
of a running test can be opened (Wireshark, ``scapy.utils.rdpcap``) at any time.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from cocotb.utils import get_sim_time

MAGIC = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
VERSION = (2, 4)
SNAPLEN = 65535
LINKTYPE_ETHERNET = 1
GLOBAL_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")


def sim_time_ns() -> float:
    return get_sim_time("ns")


class PcapWriter:
    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = sim_time_ns, nanosecond: bool = False):
        """Create ``path``; ``clock()`` gives the time in ns of a frame written without one."""
        self.path = os.fspath(path)
        self.clock = clock
        self._per_second = 1_000_000_000 if nanosecond else 1_000_000
        self.packets = 0
        self._file = open(self.path, "wb")
        self._file.write(
            GLOBAL_HEADER.pack(MAGIC_NS if nanosecond else MAGIC, *VERSION, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
        )
        self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, frame: bytes, time_ns: float | None = None) -> None:
        """Append one frame (truncated to the snaplen) stamped ``time_ns`` (default: now)."""
        if time_ns is None:
            time_ns = self.clock()
        sec, frac = divmod(int(time_ns) * self._per_second // 1_000_000_000, self._per_second)
        caplen = min(len(frame), SNAPLEN)
        self._file.write(RECORD_HEADER.pack(sec & 0xFFFFFFFF, frac, caplen, len(frame)))
        self._file.write(bytes(frame[:caplen]))
        self._file.flush()
        self.packets += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
