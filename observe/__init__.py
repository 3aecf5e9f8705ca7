"""The observation interface: a typed event bus that ``model/`` and ``iommu/`` publish on and
``tb/`` subscribes to (DESIGN.md, "observation"). It imports nothing of the project, so the
publishers stay independent of each other.
"""

from observe.bus import EventBus, Topic

__all__ = ["EventBus", "Topic"]
