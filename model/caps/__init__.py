"""Capabilities cocotbext-pcie lacks, in its own style (one class each,
``_read_register``/``_write_register`` over dword indices)."""

from model.caps.ari import AriExtendedCapability
from model.caps.pcie import NicPcieCapability
from model.caps.sriov import SriovExtendedCapability

__all__ = ["AriExtendedCapability", "NicPcieCapability", "SriovExtendedCapability"]
