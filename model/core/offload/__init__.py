"""The NIC's offloads, one job per module (``docs/datapath.md``, "Offloads"):

* :mod:`.packet` -- the RX parser: which L2/L3/L4 headers a frame carries;
* :mod:`.csum`   -- Internet checksums (RFC 1071): IPv4 header, TCP/UDP with pseudo-header;
* :mod:`.rss`    -- the Toeplitz hash (Microsoft RSS) and the queue it selects;
* :mod:`.rx`     -- what a function's receive path does to a frame: VLAN strip, checksum
  validation, RSS; the write-back info it yields;
* :mod:`.tx`     -- a TX descriptor chain's offload request: validation, then checksum
  insertion, TCP segmentation and VLAN insertion;
* :mod:`.config` -- each function's offload registers (``FN_OFFLOAD``, ``RSS_KEY``,
  ``RSS_RETA``), decoded once and cached until the PF writes them.

Nothing here awaits or touches memory: the queue engine reads and writes the data, these
functions compute on bytes, and every input (a hostile VF's descriptors, a link partner's
frame) has a defined outcome rather than an exception.
"""
