"""pyuvm verification environment of the SR-IOV NIC (see docs/verification.md).

``reference`` (pure Python forwarding/isolation rules), ``items`` (transactions),
``monitors``, ``agents``, ``sequences``, ``scoreboard``, ``coverage``, ``probe``
(waveform signals), ``inject`` (deliberate faults), ``env`` (the ``NicEnv``).

Frames are built (``frames``) and parsed (``offload_reference``) with ``struct``; scapy, which
``tests/test_frames.py`` and ``tests/test_offloads.py`` hold them to, is not imported here: its
import (protocol and service tables, interface probe) cost every simulator process about 0.1 s.
"""
