"""The host's PCI core (the role of Linux ``drivers/pci``), used by both drivers and by ``tb``.

Everything works through config and memory requests over cocotbext-pcie's host model
(``PciDevice``); nothing here imports ``model/``.

* :mod:`pcicore.config` -- capability walks with loop guards, ``pci_save_state`` / ``pci_restore_state``
* :mod:`pcicore.reset` -- ``pcie_flr``, ``pci_reset_function``
* :mod:`pcicore.irq` -- ``pci_alloc_irq_vectors`` (the host writes the MSI-X table), ``request_irq``,
  ``wait_for_irq``, ``pci_free_irq_vectors``
* :mod:`pcicore.topology` -- ARI and ACS in the ports above a function, VF bus and memory reservations
* :mod:`pcicore.iov` -- SR-IOV: ``pci_iov_init`` (at enumeration), ``pci_enable_sriov`` /
  ``pci_disable_sriov``, ``pci_iov_add_virtfn``
* :mod:`pcicore.dma` -- each function's DMA API
* :mod:`pcicore.raw` -- single requests that return the completion status (SC/UR/CRS/CA) with the data
* :mod:`pcicore.driver` -- which driver is bound to a function, ``pci_error_handlers``
* :mod:`pcicore.aer` -- the AER service of a root port: error logging and the recovery sequence
"""

from pcicore.aer import AerErrInfo, AerRecovery, AerService, AerSeverity, pci_aer_init
from pcicore.config import (
    find_capability,
    find_ext_capability,
    list_capabilities,
    pci_find_capability,
    pci_find_ext_capability,
    pci_restore_state,
    pci_save_state,
)
from pcicore.dma import dma_device, set_dma_device
from pcicore.driver import (
    PciChannelState,
    PciErrorHandlers,
    PciErsResult,
    pci_bind_driver,
    pci_bound_driver,
    pci_unbind_driver,
)
from pcicore.errors import PciError
from pcicore.iov import (
    Sriov,
    SriovState,
    pci_disable_sriov,
    pci_enable_sriov,
    pci_iov,
    pci_iov_add_virtfn,
    pci_iov_init,
    pci_iov_remove_virtfn,
    pci_num_vf,
    pci_sriov_get_totalvfs,
)
from pcicore.irq import pci_alloc_irq_vectors, pci_free_irq_vectors, request_irq, wait_for_irq
from pcicore.reset import pci_reset_function, pcie_flr
from pcicore.topology import (
    pci_bus_reserve,
    pci_enable_acs,
    pci_enable_ari,
    pci_mmio_reserve,
)

__all__ = [
    "AerErrInfo",
    "AerRecovery",
    "AerService",
    "AerSeverity",
    "PciChannelState",
    "PciError",
    "PciErrorHandlers",
    "PciErsResult",
    "Sriov",
    "SriovState",
    "dma_device",
    "find_capability",
    "pci_find_capability",
    "pci_find_ext_capability",
    "find_ext_capability",
    "list_capabilities",
    "pci_aer_init",
    "pci_bind_driver",
    "pci_bound_driver",
    "pci_alloc_irq_vectors",
    "pci_bus_reserve",
    "pci_enable_acs",
    "pci_enable_ari",
    "pci_free_irq_vectors",
    "pci_disable_sriov",
    "pci_enable_sriov",
    "pci_iov",
    "pci_iov_add_virtfn",
    "pci_iov_init",
    "pci_iov_remove_virtfn",
    "pci_num_vf",
    "pci_sriov_get_totalvfs",
    "request_irq",
    "wait_for_irq",
    "pci_mmio_reserve",
    "pci_reset_function",
    "pci_restore_state",
    "pci_save_state",
    "pci_unbind_driver",
    "pcie_flr",
    "set_dma_device",
]
