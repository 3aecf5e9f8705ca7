"""Behavioral SR-IOV NIC: PCIe functions (PF + VFs), register files, MSI-X.

The model talks to the world only through TLPs (cocotbext-pcie) and, later, its
uplink port. Public entry point: :class:`model.nic.Nic`.
"""

from model.nic import Nic

__all__ = ["Nic"]
