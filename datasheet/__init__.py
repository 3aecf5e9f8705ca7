"""The one definition of the NIC's hardware/software contract.

Imported by ``model/``, both drivers, ``tb/`` and the docs generator; imports
nothing of the project. Submodules:

* :mod:`datasheet.pci`         -- PCI/PCIe config-space layout (Linux ``pci_regs.h`` names)
* :mod:`datasheet.device`      -- the NIC's identity, sizing and derived rules (function
  index / switch port numbering, ring geometry, permanent MACs)
* :mod:`datasheet.regs`        -- BAR0 register map, declared as data
* :mod:`datasheet.descriptors` -- TX/RX descriptor and write-back layouts
* :mod:`datasheet.mailbox`     -- PF<->VF mailbox messages, errors and protocol timing
"""
