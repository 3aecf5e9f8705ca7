"""The behavioral SR-IOV NIC.

:class:`Nic` is the entry point: one device core (``model.core``: per-function slices,
queue engines, DMA engines, mailbox, embedded switch, uplink port) behind PCIe shells
(``model.pcie``: PF and VF config space and BAR decode). The model talks to the world
through the fabric (requests in; DMA and MSI-X out) and its uplink port, tells observers
what it did through ``nic.events`` (``model.events``) and offers fault-injection points
for verification through ``nic.inject`` (``model.inject``).
"""

from model.nic import Nic

__all__ = ["Nic"]
