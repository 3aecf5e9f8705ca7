"""pyuvm verification environment of the SR-IOV NIC (see docs/verification.md).

``reference`` (pure Python forwarding/isolation rules), ``items`` (transactions),
``monitors``, ``agents``, ``sequences``, ``scoreboard``, ``coverage``, ``probe``
(waveform signals), ``inject`` (deliberate faults), ``env`` (the ``NicEnv``).

The environment parses and builds frames with scapy (the offload reference) with every
address given, and never routes or sends one, so scapy need not read the host's IPv4 and
IPv6 routing tables when it is first imported (``conf.route_autoload``,
``conf.route6_autoload``: 80 ms of every simulator process's start). Set before any module
of this package imports scapy's layers, for the whole process: if scapy's routes were loaded
earlier, they stay; if not, a packet whose source address is left to scapy (``IP()``) gets
0.0.0.0 (``conf.route.resync()`` and ``conf.route6.resync()`` load the routes on demand).
"""

from scapy.config import conf

conf.route_autoload = conf.route6_autoload = False
