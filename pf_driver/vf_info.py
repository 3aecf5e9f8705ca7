"""Per-VF state the PF driver keeps, and the administrator's policy over each VF.

Shaped after ``ip link set <pf> vf N mac|vlan|spoofchk|trust|state`` and the
Linux ``struct vf_data_storage`` of igb.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from datasheet import device
from datasheet import mailbox as mbx
from datasheet.mailbox import Offload


class VfState(enum.Enum):
    NOT_RESET = "not-reset"  # no RESET yet (or after VFLR / PF reset): only RESET is accepted
    CTS = "cleared-to-send"  # RESET accepted
    CONFIGURED = "configured"  # at least one ring configured
    DISABLED = "disabled"  # the PF disabled the VF after repeated error events (MddPolicy)


@dataclass(frozen=True)
class MddPolicy:
    """What the PF does when a VF enters the error state (Linux i40e/ice "malicious driver
    detection"): it always logs and counts the event; it resets the VF, unless the VF had
    ``disable_after`` events within ``window_ns``, in which case the VF stays disabled
    until the administrator re-admits it (``PfDriver.reset_vf``)."""

    disable_after: int | None = None
    window_ns: float = 10_000_000


class LinkState(enum.Enum):
    AUTO = "auto"  # follow the uplink
    ENABLE = "enable"  # always up
    DISABLE = "disable"  # always down


@dataclass
class RingConfig:
    iova: int
    length: int
    buf_size: int


@dataclass
class VfInfo:
    index: int
    permanent_mac: bytes
    state: VfState = VfState.NOT_RESET
    mac: bytes = b""
    admin_mac: bool = False
    admin_vlan: int | None = None
    trust: bool = False
    spoofchk: bool = True
    link_state: LinkState = LinkState.AUTO
    api_version: tuple[int, int] | None = None
    multicast: list[bytes] = field(default_factory=list)
    vlans: set[int] = field(default_factory=set)
    promisc_unicast: bool = False
    promisc_multicast: bool = False
    tx_rings: dict[int, RingConfig] = field(default_factory=dict)
    rx_rings: dict[int, RingConfig] = field(default_factory=dict)
    #: administrator policy: the offloads the VF may turn on (survives VF resets)
    allowed_offloads: Offload = mbx.ALL_OFFLOADS
    #: what the VF turned on (SET_OFFLOADS) and its RSS parameters (CONFIG_RSS_*, SET_RSS_HENA)
    offloads: Offload = Offload(0)
    rss_key: bytes = bytes(device.RSS_KEY_SIZE)
    rss_table: list[int] = field(default_factory=lambda: [0] * device.RSS_RETA_SIZE)
    rss_hena: int = 0
    # service bookkeeping
    tokens: float = mbx.MBX_RATE_BURST
    last_refill_ns: float = 0.0
    awaiting_ack: bool = False
    awaiting_since: float = 0.0
    pending_notifications: list[mbx.Message] = field(default_factory=list)
    received: int = 0
    nacked: int = 0
    rate_limited: int = 0
    lock_hogs: int = 0  # times the PF took the mailbox back with RVFU
    errors: int = 0  # error events (the VF entered the error state)
    error_times: list[float] = field(default_factory=list)

    def set_admin_mac(self, mac: bytes) -> None:
        """An administrator's MAC (``ip link set <pf> vf N mac``): it survives VF resets."""
        self.mac, self.admin_mac = bytes(mac), True

    def clear_requested_state(self) -> None:
        """What RESET, VFLR and PF reset undo: everything the VF asked for, not admin policy."""
        if not self.admin_mac:
            self.mac = self.permanent_mac
        self.multicast.clear()
        self.vlans.clear()
        self.promisc_unicast = self.promisc_multicast = False
        self.tx_rings.clear()
        self.rx_rings.clear()
        self.api_version = None
        self.offloads = Offload(0)
        self.rss_key = bytes(device.RSS_KEY_SIZE)
        self.rss_table = [0] * device.RSS_RETA_SIZE
        self.rss_hena = 0
