"""Capabilities cocotbext-pcie lacks or that the NIC extends, in the library's own style (one
class each, ``_read_register``/``_write_register`` over dword indices)."""

from model.pcie.caps.aer import NicAerCapability
from model.pcie.caps.ari import AriExtendedCapability
from model.pcie.caps.msix import NicMsixCapability
from model.pcie.caps.pcie import NicPcieCapability
from model.pcie.caps.sriov import SriovExtendedCapability

__all__ = [
    "AriExtendedCapability",
    "NicAerCapability",
    "NicMsixCapability",
    "NicPcieCapability",
    "SriovExtendedCapability",
]
