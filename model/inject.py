"""Injection points the device offers for verification (``nic.inject``).

Fault-injection tests use these instead of replacing model methods. Each arms a one-shot
fault that the model itself carries out at the named point, and returns an
:class:`Injection` that says whether and on what it fired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.core.device_core import DeviceCore
    from model.core.slice import FunctionSlice


@dataclass
class Injection:
    """One armed fault: ``fired`` once the model carried it out; ``frame`` and ``fn`` say on what."""

    what: str
    fired: bool = False
    frame: bytes | None = None
    fn: int | None = None

    def fire(self, frame: bytes | None = None, fn: int | None = None) -> None:
        self.fired, self.frame, self.fn = True, frame, fn


class InjectionPoints:
    def __init__(self, core: DeviceCore):
        self._core = core

    def _function(self, fn: int) -> FunctionSlice:
        function = self._core.function_at(fn)
        if function is None:
            raise ValueError(f"no function {fn}")
        return function

    def engine_fault(self, fn: int) -> Injection:
        """The next DMA engine turn of function ``fn`` (0 = PF, 1 + i = VF i) raises an
        unexpected exception: the model's guard must put that function in the error state."""
        injection = Injection("engine_fault")
        self._function(fn).queues.inject_fault = injection
        return injection

    def misroute_next(self, ports: set[int]) -> Injection:
        """The next unicast frame from one of ``ports`` to the owner of its destination MAC,
        another of ``ports``, is delivered to a third of them instead (a switch bug)."""
        injection = Injection("misroute")
        self._core.switch.misroute_next = (set(ports), injection)
        return injection

    def misqueue_next(self, fn: int) -> Injection:
        """The next frame RSS steers to one of function ``fn``'s RX queues goes to the next queue
        instead (a steering bug)."""
        self._function(fn)
        injection = Injection("misqueue")
        self._core.misqueue_next[fn] = injection
        return injection

    def corrupt_next_rx(self, fn: int, offset: int = 40) -> Injection:
        """One byte (``offset``) of the next frame the switch hands to function ``fn`` is flipped
        on its way into the RX queue (a datapath bug)."""
        self._function(fn)
        injection = Injection("corrupt")
        self._core.corrupt_next[fn] = (offset, injection)
        return injection
