"""The one definition of the NIC's hardware/software contract.

Imported by ``model/``, both drivers, ``tb/`` and the docs generator; imports
nothing of the project. Submodules:

* :mod:`datasheet.pci`     -- PCI/PCIe config-space layout (Linux ``pci_regs.h`` names)
* :mod:`datasheet.device`  -- the NIC's identity and sizing parameters
* :mod:`datasheet.regs`    -- BAR0 register map, declared as data
"""
