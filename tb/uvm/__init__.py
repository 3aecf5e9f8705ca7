"""pyuvm verification environment of the SR-IOV NIC (see docs/verification.md).

``reference`` (pure Python forwarding/isolation rules), ``items`` (transactions),
``monitors``, ``agents``, ``sequences``, ``scoreboard``, ``coverage``, ``probe``
(waveform signals), ``inject`` (deliberate faults), ``env`` (the ``NicEnv``).

The environment parses and builds frames with scapy (the offload reference) with every
address given, and never routes or sends one, so scapy need not read the host's IPv4 and
IPv6 routing tables when it is first imported (``conf.route_autoload``,
``conf.route6_autoload``: 80 ms of every simulator process's start). Set before any module
of this package imports scapy's layers; if scapy's routes were loaded earlier in the
process, they stay (``conf.route.resync()`` loads them on demand).
"""

from scapy.config import conf

conf.route_autoload = conf.route6_autoload = False
