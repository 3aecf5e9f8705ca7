"""pyuvm verification environment of the SR-IOV NIC (see docs/verification.md).

``reference`` (pure Python forwarding/isolation rules), ``items`` (transactions),
``monitors``, ``agents``, ``sequences``, ``scoreboard``, ``coverage``, ``probe``
(waveform signals), ``inject`` (deliberate faults), ``env`` (the ``NicEnv``).
"""
