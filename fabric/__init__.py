"""The PCIe fabric between the host and the device, at one of two abstraction levels.

``tlp``: cocotbext-pcie's links, TLP-accurate (serialisation, link delay, data link layer
ACKs, flow control), with ports that sleep while nothing moves (:mod:`fabric.link`).

``fast``: transaction level (:mod:`fabric.transaction`): configuration, memory and
interrupt requests are direct calls into the same root complex, IOMMU and device code,
with the same routing, translation and completion outcomes (UR, dropped posted writes,
bus mastering, BAR decode), in the same order, in zero simulated time.  Any other TLP
(a message, a raw request) still crosses the link, handed over without timing
(:class:`fabric.direct.DirectPort`).

Pick one per run, after SystemC TLM-2.0's loosely timed / approximately timed split::

    rc = FabricRootComplex(fabric="fast")      # or "tlp"; None: $FABRIC, else "tlp"
    port = rc.make_port()
    port.connect(device)                       # the link the fabric uses
"""

from __future__ import annotations

import os

TLP = "tlp"
FAST = "fast"
#: every fabric, the TLP-accurate one (the default) first
FABRICS = (TLP, FAST)
#: environment variable that picks the fabric of a run (``make test FABRIC=fast``)
ENV = "FABRIC"


def resolve(fabric: str | None = None) -> str:
    """The fabric to use: ``fabric`` if given, else ``$FABRIC``, else :data:`TLP`."""
    name = fabric if fabric is not None else os.environ.get(ENV) or TLP
    name = name.strip().lower()
    if name not in FABRICS:
        raise ValueError(f"unknown fabric {name!r}: one of {', '.join(FABRICS)}")
    return name


__all__ = ["ENV", "FABRICS", "FAST", "TLP", "resolve"]
