"""Deliberate faults, to prove the scoreboard sees them.

The device's own faults come from its injection points (``nic.inject``: a misrouted
frame, a corrupted RX frame). The one fault here is the platform's: :func:`share_domain`
attaches one VF's requester ID to another VF's IOMMU domain without telling anyone (a
hypervisor bug), so its DMA is translated with the other VF's page tables.
"""

from __future__ import annotations


def share_domain(system, victim_vf, owner_vf) -> None:
    """Attach ``victim_vf``'s RID to ``owner_vf``'s domain behind the platform's back."""
    system.iommu_driver.attach_device(owner_vf.dma.domain, int(victim_vf.pdev.pcie_id))
