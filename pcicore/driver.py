"""Which driver is bound to each function, and the error handlers a driver offers
(Linux ``dev->driver`` and ``struct pci_error_handlers``, include/linux/pci.h).

A driver binds itself when it probes (what ``pci_device_probe`` does for it) and unbinds
when it is removed; the AER service (:mod:`pcicore.aer`) calls the bound driver's handlers.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from cocotbext.pcie.core.pci import PciDevice


class PciChannelState(enum.Enum):
    """``pci_channel_state_t``: how usable the function's link is when an error is reported."""

    NORMAL = "io_normal"  # MMIO and DMA still work: a non-fatal error
    FROZEN = "io_frozen"  # a fatal error: the function is reset before it is used again
    PERM_FAILURE = "io_perm_failure"  # gone for good


class PciErsResult(enum.Enum):
    """``pci_ers_result_t``: a handler's vote on how recovery goes on."""

    NONE = "none"  # no opinion
    CAN_RECOVER = "can_recover"  # MMIO works: call mmio_enabled
    NEED_RESET = "need_reset"  # the function needs a reset: reset it, call slot_reset
    DISCONNECT = "disconnect"  # give up on the function
    RECOVERED = "recovered"  # the driver recovered: call resume
    NO_AER_DRIVER = "no_aer_driver"  # no handlers: recovery fails


def merge_result(orig: PciErsResult, new: PciErsResult) -> PciErsResult:
    """Combine two votes as Linux's ``merge_result`` (drivers/pci/pcie/err.c)."""
    if new is PciErsResult.NO_AER_DRIVER:
        return new
    if new is PciErsResult.NONE:
        return orig
    if orig in (PciErsResult.CAN_RECOVER, PciErsResult.RECOVERED):
        return new
    if orig is PciErsResult.DISCONNECT and new is PciErsResult.NEED_RESET:
        return new
    return orig


@runtime_checkable
class PciErrorHandlers(Protocol):
    """``struct pci_error_handlers``: what a driver does in the Linux recovery sequence
    error_detected -> mmio_enabled or (reset, slot_reset) -> resume."""

    async def error_detected(self, state: PciChannelState) -> PciErsResult: ...

    async def mmio_enabled(self) -> PciErsResult: ...

    async def slot_reset(self) -> PciErsResult: ...

    async def resume(self) -> None: ...

    async def cor_error_detected(self) -> None: ...


def pci_bind_driver(dev: PciDevice, driver: object) -> None:
    """``driver`` is bound to ``dev`` from now on (``dev->driver``, kept on the device)."""
    dev.driver = driver


def pci_unbind_driver(dev: PciDevice, driver: object) -> None:
    """Unbind ``driver`` from ``dev`` (nothing happens if another driver took its place)."""
    if pci_bound_driver(dev) is driver:
        dev.driver = None


def pci_bound_driver(dev: PciDevice) -> object | None:
    """The driver bound to ``dev``, None if none."""
    return getattr(dev, "driver", None)


def pci_err_handlers(dev: PciDevice) -> PciErrorHandlers | None:
    """The bound driver's error handlers, None if unbound or the driver has none."""
    driver = pci_bound_driver(dev)
    return driver if isinstance(driver, PciErrorHandlers) else None
