"""Injection points the device offers for verification (``nic.inject``).

Fault-injection tests use these instead of replacing model methods. Each arms a
one-shot fault that the model itself carries out at the named point.
"""

from __future__ import annotations


class InjectionPoints:
    def __init__(self, nic):
        self._nic = nic

    def engine_fault(self, fn: int) -> None:
        """The next DMA engine turn of function ``fn`` (0 = PF, 1 + i = VF i) raises an
        unexpected exception: the model's guard must put that function in the error state."""
        function = self._nic.function_at(fn)
        if function is None:
            raise ValueError(f"no function {fn}")
        function.queues.inject_fault = True
