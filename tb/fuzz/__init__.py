"""The hostile-VF campaign (``make fuzz SEEDS=N``; docs/security.md).

One VF of a running system is handed to an attacker who does what a guest driver can:
MMIO of any size and alignment in its BAR windows, arbitrary descriptors and ring
geometry, RX buffers anywhere, mailbox garbage, floods and lock hogging, FLR and reset
storms, clearing its own Bus Master Enable, its own MSI-X table pointed at other
functions' vectors; the host is careless too (random config writes to the VF, NumVFs
writes under traffic). Meanwhile the other VFs, the PF and the link partner exchange
tagged frames.

Each seed runs several *episodes*, one scenario kind each (:data:`acts.SCENARIOS`), and
checks after every episode (:mod:`tb.fuzz.campaign`):

* nothing escaped: no exception out of the model, the IOMMU or a victim's driver, and
  no fault contained by the model's guard (a guard hit is a model bug);
* every victim frame arrived intact exactly once, or a counter explains its loss;
* the attacker's DMA reached only what its own domain maps, and it raised no other
  function's interrupt; canary pages nobody maps are unchanged;
* every hostile act was visible to the host (a fault, a counter, an error event);
* simulated and wall time stayed within the episode's budget.

Modules: :mod:`~tb.fuzz.world` (the system and what is recorded of it),
:mod:`~tb.fuzz.victims` (tagged victim traffic), :mod:`~tb.fuzz.acts` (the attacker),
:mod:`~tb.fuzz.campaign` (episodes and invariants), ``python -m tb.fuzz`` (the runner).
"""
