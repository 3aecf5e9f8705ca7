"""Networking core shared by the PF and VF drivers (the role of Linux's netdev/NAPI core
and a shared Intel ring library): descriptor rings over the DMA API and a NAPI-style
net device. Only ``datasheet`` and the host services (DMA API, MMIO, MSI-X) are used."""

from netdev.netdev import NetDev, QueueStats
from netdev.offload import FEATURES, FeatureError, RssConfig, TxOffload
from netdev.ring import RxRing, TxRing

__all__ = ["FEATURES", "FeatureError", "NetDev", "QueueStats", "RssConfig", "RxRing", "TxOffload", "TxRing"]
