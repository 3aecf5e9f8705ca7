"""What the scoreboard saw, recorded so that two runs of one seed can be compared.

The same seed must give the same scoreboard-visible events on both fabrics (DESIGN.md,
docs/verification.md "Equivalence of the fabrics"). :class:`EventRecord` subscribes to the
streams the scoreboard checks and keeps, per stream, what no fabric may change:

* ``switch/<port>``: every frame that entered the switch from that port, in order, with its
  verdict (counters moved, functions reached and whether their queue took it, uplink);
* ``rx/<port>``, ``uplink``: the frames each net device and the link partner received
  (as multisets: frames from different sources may interleave differently);
* ``dma/<rid>``: the pages each requester read and wrote through the IOMMU and whether each
  access was translated or blocked, and why (a set);
* ``faults``: every blocked request, with its reason; ``resets``: the resets, per port in order;
* ``final``: the scoreboard's counts and error kinds, the switch's and every function's
  statistics registers and the IOMMU's fault count, read at the end of the test.

How a ring's descriptors are grouped into DMA requests is not recorded: the device fetches
and writes back what is posted when its turn comes, so the batches follow the timing of the
doorbells (the TLP fabric delays a turn's DMA, the transaction-level one does not), while
what is read and written, where, and with which outcome does not.  For the same reason the
scoreboard's counts of DMA requests and of frames (and offload reports) that passed during a
port's transition window (:data:`TIMING_STATS`) are left out of ``final``.

Frames are recorded by digest.  :func:`compare` reports the streams that differ and where.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pyuvm import uvm_component, uvm_subscriber

#: streams compared as multisets (the rest in order)
UNORDERED = ("rx/", "uplink", "dma/", "faults")
#: streams whose repeated entries count once (sets)
SETS = ("dma/",)
#: scoreboard counts that follow timing, not outcomes: DMA requests (the batching of
#: descriptors per request follows the doorbells' timing) and how many frames happened to
#: pass while a port was in a transition window, so were checked leniently rather than
#: strictly, offload reports included (the scoreboard's strictness, not an event)
TIMING_STATS = ("dma", "lenient_frames", "lost_in_transition", "rx_offload_checked")
PAGE_SHIFT = 12


def digest(frame: bytes) -> str:
    return hashlib.blake2b(bytes(frame), digest_size=8).hexdigest()


def imp(parent: uvm_component, name: str, fn: Any) -> Any:
    return uvm_subscriber.uvm_AnalysisImp(name, parent, fn)


class EventRecord(uvm_component):
    def build_phase(self) -> None:
        self.switch_export = imp(self, "switch_export", self.write_switch)
        self.rx_export = imp(self, "rx_export", self.write_rx)
        self.uplink_export = imp(self, "uplink_export", self.write_uplink)
        self.dma_export = imp(self, "dma_export", self.write_dma)
        self.reset_export = imp(self, "reset_export", self.write_reset)
        self.streams: dict[str, list] = defaultdict(list)
        self.final: dict[str, Any] = {}

    def write_switch(self, ev: Any) -> None:
        self.streams[f"switch/{ev.src}"].append(
            [
                digest(ev.frame),
                sorted(ev.counters),
                sorted([port, digest(frame), bool(accepted)] for port, frame, accepted in ev.deliveries),
                [[digest(frame), bool(sent)] for frame, sent in ev.uplink],
            ]
        )

    def write_rx(self, item: Any) -> None:
        self.streams[f"rx/{item.port}"].append(digest(item.frame))

    def write_uplink(self, item: Any) -> None:
        self.streams["uplink"].append(digest(item.frame))

    def write_dma(self, ev: Any) -> None:
        first, last = ev.iova >> PAGE_SHIFT, (ev.iova + max(ev.length, 1) - 1) >> PAGE_SHIFT
        self.streams[f"dma/{ev.rid:04x}"] += [[page, ev.is_write, ev.fault_reason] for page in range(first, last + 1)]
        if ev.fault_reason is not None:
            self.streams["faults"].append([ev.rid, ev.fault_reason])

    def write_reset(self, ev: Any) -> None:
        self.streams[f"resets/{ev.port}"].append(ev.kind)

    # -- the record --------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        streams = {}
        for key, items in sorted(self.streams.items()):
            if key.startswith(SETS):
                items = [json.loads(text) for text in sorted(set(map(json.dumps, items)))]
            elif key.startswith(UNORDERED):
                items = sorted(items, key=json.dumps)
            streams[key] = items
        return {"streams": streams, "final": self.final}

    def dump(self, path: Path, **meta: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": meta, **self.as_dict()}, indent=1, sort_keys=True))
        return path


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def compare(a: dict[str, Any], b: dict[str, Any], limit: int = 20) -> list[str]:
    """The differences between two records (``load``-ed), as readable lines; [] if equal."""
    out: list[str] = []
    sa, sb = a["streams"], b["streams"]
    for key in sorted(set(sa) | set(sb)):
        x, y = sa.get(key, []), sb.get(key, [])
        if x == y:
            continue
        if key.startswith(UNORDERED):
            only_a = Counter(map(json.dumps, x)) - Counter(map(json.dumps, y))
            only_b = Counter(map(json.dumps, y)) - Counter(map(json.dumps, x))
            if not only_a and not only_b:
                continue
            out.append(
                f"{key}: {len(x)} vs {len(y)} events; only in the first: {list(only_a.elements())[:3]}, "
                f"only in the second: {list(only_b.elements())[:3]}"
            )
        else:
            k = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            out.append(
                f"{key}: {len(x)} vs {len(y)} events, first difference at #{k}: "
                f"{x[k] if k < len(x) else '(none)'} vs {y[k] if k < len(y) else '(none)'}"
            )
    fa, fb = a["final"], b["final"]
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            out.append(f"final {key}: {fa.get(key)} vs {fb.get(key)}")
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])
