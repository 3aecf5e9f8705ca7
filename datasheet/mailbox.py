"""PF<->VF mailbox protocol: message header, opcodes, payloads and error codes.

A message is up to 16 dwords in the mailbox buffer (``regs.VF_MBMEM`` /
``regs.PF_MBMEM``). Dword 0 is the header; the payload follows. Both drivers
and the docs import this module; the table in ``docs/mailbox.md`` is generated
from :data:`MESSAGES`.

Handshake (igb/ixgbe style, see docs/mailbox.md): the sender takes the buffer
lock (VFU or PFU), writes the message, rings the doorbell (REQ or STS), which
releases the lock and interrupts the receiver. The receiver reads the message in
one read of the buffer without the lock (as Linux's ixgbe and ixgbevf do since
their mailbox rework: the sender writes no new message before the receiver's ACK);
a VF then writes ACK, the PF takes the lock for its reply and writes ACK with STS
in one write. Requests from a VF are
answered by a reply message with the same opcode and ACK or NACK set; a NACK
carries one payload dword, an :class:`MbxError` code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from datasheet import device
from datasheet.regs import Field

MBX_DWORDS = 16
MAX_PAYLOAD = MBX_DWORDS - 1

HDR_OPCODE = Field("OPCODE", 0, 16, "operation")
HDR_LEN = Field("LEN", 16, 8, "payload length in dwords (0..15)")
HDR_CTS = Field("CTS", 29, 1, "clear to send: the PF accepted the VF's RESET")
HDR_NACK = Field("NACK", 30, 1, "request refused; payload dword 0 is an MbxError")
HDR_ACK = Field("ACK", 31, 1, "request done; payload per the opcode's reply")

#: API version spoken by this datasheet (major, minor)
API_VERSION = (1, 2)
#: the first version with the offload messages (GET_OFFLOADS .. SET_RSS_HENA); a VF that agreed
#: on an older one works without offloads, and the PF NACKs those messages UNSUPPORTED_API
OFFLOADS_API = (1, 2)
#: multicast addresses one SET_MULTICAST can carry (2 dwords each, after a count dword)
MAX_MULTICAST = 7
#: VLAN filters a VF may hold: the switch's per-function table
MAX_VLANS = device.SW_VLANS_PER_FN


class Opcode(enum.IntEnum):
    RESET = 0x0001
    SET_MAC = 0x0002
    SET_MULTICAST = 0x0003
    SET_VLAN = 0x0004
    SET_PROMISC = 0x0005
    GET_QUEUES = 0x0006
    CONFIG_QUEUES = 0x0007
    API_NEGOTIATE = 0x0008
    LINK_STATUS = 0x0009
    GET_OFFLOADS = 0x000A
    SET_OFFLOADS = 0x000B
    CONFIG_RSS_KEY = 0x000C
    CONFIG_RSS_LUT = 0x000D
    SET_RSS_HENA = 0x000E


class MbxError(enum.IntEnum):
    UNKNOWN_OPCODE = 1
    BAD_LENGTH = 2
    NOT_RESET = 3  # the VF has not completed RESET (no CTS yet)
    POLICY = 4  # refused by administrator policy (admin MAC, untrusted VF)
    INVALID = 5  # a parameter is out of range
    RATE_LIMITED = 6  # the VF sent too many messages; try later
    UNSUPPORTED_API = 7


# payload bit layouts
VLAN_VID = Field("VID", 0, 12, "VLAN ID")
VLAN_ADD = Field("ADD", 31, 1, "1 add, 0 remove")
PROMISC_UNICAST = Field("UPE", 0, 1, "unicast promiscuous")
PROMISC_MULTICAST = Field("MPE", 1, 1, "multicast promiscuous")
QCFG_INDEX = Field("QUEUE", 0, 16, "queue index within the VF's allotment")
QCFG_RX = Field("RX", 31, 1, "1 RX ring, 0 TX ring")
LINK_UP = Field("UP", 0, 1, "link is up")


class Offload(enum.IntFlag):
    """The offloads a VF may have (GET_OFFLOADS: what the PF allows it; SET_OFFLOADS: what it
    turns on), after Linux's ``ethtool -k`` features."""

    RSS = 1 << 0  # rxhash: RSS hash and queue spreading (parameters: CONFIG_RSS_*, SET_RSS_HENA)
    RXCSUM = 1 << 1  # rx-checksum
    TXCSUM = 1 << 2  # tx-checksum (IXSM, TXSM)
    TSO = 1 << 3  # tso (TSE)
    RXVLAN = 1 << 4  # rxvlan: strip 802.1Q tags on receive
    TXVLAN = 1 << 5  # txvlan: insert 802.1Q tags on transmit (VLE)


ALL_OFFLOADS = Offload(sum(Offload))
#: CONFIG_RSS_KEY: the key in RSS_KEY's layout (4 bytes per dword, first byte in bits 7:0)
RSS_KEY_DWORDS = device.RSS_KEY_SIZE // 4
#: CONFIG_RSS_LUT: the indirection table in RSS_RETA's layout
RSS_LUT_DWORDS = device.RSS_RETA_SIZE * device.RSS_RETA_ENTRY_BITS // 32


class Direction(enum.Enum):
    VF_TO_PF = "VF -> PF"
    PF_TO_VF = "PF -> VF"


@dataclass(frozen=True)
class MessageSpec:
    opcode: Opcode
    direction: Direction
    request: str
    request_len: tuple[int, int]  # allowed payload dwords (min, max)
    reply: str
    reply_len: int
    doc: str


MESSAGES: tuple[MessageSpec, ...] = (
    MessageSpec(
        Opcode.RESET,
        Direction.VF_TO_PF,
        "-",
        (0, 0),
        "ACK+CTS; MAC (2 dwords: bytes 0-3, 4-5)",
        2,
        "Start or restart: the PF clears the VF's filters and queues and grants CTS.",
    ),
    MessageSpec(
        Opcode.SET_MAC,
        Direction.VF_TO_PF,
        "MAC (2 dwords)",
        (2, 2),
        "ACK",
        0,
        "Set the VF's unicast MAC. NACK POLICY if an administrator set it and the VF is untrusted; "
        "NACK INVALID for a multicast or zero address.",
    ),
    MessageSpec(
        Opcode.SET_MULTICAST,
        Direction.VF_TO_PF,
        f"count, count x MAC (2 dwords each), count <= {MAX_MULTICAST}",
        (1, 1 + 2 * MAX_MULTICAST),
        "ACK",
        0,
        "Replace the VF's multicast list; length must equal 1 + 2 x count.",
    ),
    MessageSpec(
        Opcode.SET_VLAN,
        Direction.VF_TO_PF,
        "VID [11:0], ADD [31]",
        (1, 1),
        "ACK",
        0,
        f"Add or remove a VLAN filter (at most {MAX_VLANS}). NACK POLICY while an administrator VLAN is set.",
    ),
    MessageSpec(
        Opcode.SET_PROMISC,
        Direction.VF_TO_PF,
        "UPE [0], MPE [1]",
        (1, 1),
        "ACK",
        0,
        "Promiscuous modes; NACK POLICY for an untrusted VF asking for either.",
    ),
    MessageSpec(
        Opcode.GET_QUEUES,
        Direction.VF_TO_PF,
        "-",
        (0, 0),
        "TX queues, RX queues, default queue",
        3,
        "The VF's queue allotment.",
    ),
    MessageSpec(
        Opcode.CONFIG_QUEUES,
        Direction.VF_TO_PF,
        "QUEUE [15:0] + RX [31]; ring IOVA low, high; ring length (descriptors); RX buffer size",
        (5, 5),
        "ACK",
        0,
        "Configure one ring. The PF validates index, alignment, length (power of two) and buffer size.",
    ),
    MessageSpec(
        Opcode.API_NEGOTIATE,
        Direction.VF_TO_PF,
        "version (major << 16 | minor)",
        (1, 1),
        "agreed version",
        1,
        "NACK UNSUPPORTED_API if the major versions differ.",
    ),
    MessageSpec(
        Opcode.GET_OFFLOADS,
        Direction.VF_TO_PF,
        "-",
        (0, 0),
        "allowed Offload bits; RSS key size (bytes); RSS table size (entries)",
        3,
        f"The offloads the PF's policy allows the VF (API {OFFLOADS_API[0]}.{OFFLOADS_API[1]}).",
    ),
    MessageSpec(
        Opcode.SET_OFFLOADS,
        Direction.VF_TO_PF,
        "Offload bits to turn on (the others off)",
        (1, 1),
        "ACK",
        0,
        "NACK POLICY for an offload the PF does not allow, INVALID for an unknown bit. "
        "Without RSS the VF's frames go to its default queue.",
    ),
    MessageSpec(
        Opcode.CONFIG_RSS_KEY,
        Direction.VF_TO_PF,
        f"the {device.RSS_KEY_SIZE}-byte Toeplitz key, 4 bytes per dword (first byte in bits 7:0)",
        (RSS_KEY_DWORDS, RSS_KEY_DWORDS),
        "ACK",
        0,
        "NACK BAD_LENGTH for any other key length, POLICY if RSS is not allowed.",
    ),
    MessageSpec(
        Opcode.CONFIG_RSS_LUT,
        Direction.VF_TO_PF,
        f"the {device.RSS_RETA_SIZE}-entry indirection table, "
        f"{32 // device.RSS_RETA_ENTRY_BITS} {device.RSS_RETA_ENTRY_BITS}-bit entries per dword (RSS_RETA layout)",
        (RSS_LUT_DWORDS, RSS_LUT_DWORDS),
        "ACK",
        0,
        "NACK INVALID for an entry beyond the VF's RX queues, POLICY if RSS is not allowed.",
    ),
    MessageSpec(
        Opcode.SET_RSS_HENA,
        Direction.VF_TO_PF,
        "hash types (FN_OFFLOAD.HASH_* bits 5:0)",
        (1, 1),
        "ACK",
        0,
        "Which RSS hash types apply; NACK INVALID for other bits, POLICY if RSS is not allowed.",
    ),
    MessageSpec(
        Opcode.LINK_STATUS,
        Direction.PF_TO_VF,
        "UP [0]; speed in Mb/s",
        (2, 2),
        "(mailbox ACK bit only)",
        0,
        "Notification of a link change; the VF acknowledges with ACK.",
    ),
)

SPECS = {m.opcode: m for m in MESSAGES}


@dataclass
class Message:
    opcode: int
    payload: list[int]
    ack: bool = False
    nack: bool = False
    cts: bool = False
    length: int | None = None  # LEN as received (may disagree with the payload actually read)

    def encode(self) -> list[int]:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} dwords exceeds {MAX_PAYLOAD}")
        hdr = HDR_OPCODE.put(0, self.opcode)
        hdr = HDR_LEN.put(hdr, len(self.payload))
        hdr = HDR_ACK.put(hdr, int(self.ack))
        hdr = HDR_NACK.put(hdr, int(self.nack))
        hdr = HDR_CTS.put(hdr, int(self.cts))
        return [hdr] + [w & 0xFFFFFFFF for w in self.payload]

    @classmethod
    def decode(cls, words: list[int]) -> Message:
        """Decode a buffer; LEN is clamped to the buffer (the receiver checks it per opcode)."""
        hdr = words[0]
        n = min(HDR_LEN.get(hdr), MAX_PAYLOAD)
        return cls(
            HDR_OPCODE.get(hdr),
            list(words[1 : 1 + n]),
            bool(HDR_ACK.get(hdr)),
            bool(HDR_NACK.get(hdr)),
            bool(HDR_CTS.get(hdr)),
            HDR_LEN.get(hdr),
        )

    @property
    def declared_len(self) -> int:
        return len(self.payload) if self.length is None else self.length

    @property
    def is_reply(self) -> bool:
        return self.ack or self.nack


def mac_to_words(mac: bytes) -> list[int]:
    return [int.from_bytes(mac[0:4], "little"), int.from_bytes(mac[4:6], "little")]


def words_to_mac(words: list[int]) -> bytes:
    return words[0].to_bytes(4, "little") + (words[1] & 0xFFFF).to_bytes(2, "little")


#: requests that change what the embedded switch forwards to the VF (the PF reprograms its
#: filters when it ACKs one)
FILTER_OPCODES = frozenset({Opcode.RESET, Opcode.SET_MAC, Opcode.SET_MULTICAST, Opcode.SET_VLAN, Opcode.SET_PROMISC})
#: requests that change the VF's offloads (the PF reprograms FN_OFFLOAD, RSS_KEY, RSS_RETA when it
#: ACKs one)
OFFLOAD_OPCODES = frozenset(
    {Opcode.RESET, Opcode.SET_OFFLOADS, Opcode.CONFIG_RSS_KEY, Opcode.CONFIG_RSS_LUT, Opcode.SET_RSS_HENA}
)


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# -- protocol timing, shared by both sides ---------------------------------------------
#: longest a side waits for one mailbox event (ACK, reply, lock) before giving up
MBX_TIMEOUT_NS = 2_000_000
#: retries of a whole request after a timeout
MBX_RETRIES = 3
#: interval between attempts to take a buffer lock held by the other side
MBX_LOCK_RETRY_NS = 1_000
#: longest the PF waits for a VF to release the buffer (VFU) before taking it back with RVFU;
#: each take-back is counted against the VF
MBX_LOCK_HOLD_NS = 50_000
#: PF-side rate limit per VF: burst size and refill interval (one message per interval)
MBX_RATE_BURST = 16
MBX_RATE_REFILL_NS = 20_000
