"""``@pyuvm_test``: a pyuvm test class as a cocotb test, as ``pyuvm.test`` makes one.

``pyuvm.test`` finds the module to put the cocotb test in with ``inspect.stack()``, which
reads the source context of every frame on the stack (the import machinery's included) and
scans ``sys.modules`` for each: some 10 ms per test class, at every import of a test module
(each simulator process). The class knows its module, so this decorator asks it instead;
the cocotb test is the same (its name the class's, run by ``uvm_root().run_test``) and is
registered under the same name, in the same order.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import cocotb
from pyuvm import uvm_root


def pyuvm_test(
    timeout_time: float | None = None,
    timeout_unit: str = "step",
    expect_fail: bool = False,
    expect_error: tuple = (),
    skip: bool = False,
) -> Callable[[type], type]:
    """Run the decorated ``uvm_test`` class as a cocotb test (the arguments are cocotb's)."""

    def decorator(cls: type) -> type:
        @cocotb.test(
            timeout_time=timeout_time,
            timeout_unit=timeout_unit,
            expect_fail=expect_fail,
            expect_error=expect_error,
            skip=skip,
            stage=0,
            name=cls.__name__,
        )
        @functools.wraps(cls)
        async def test_obj(_dut) -> None:
            await uvm_root().run_test(cls, keep_singletons=False, keep_set=set())

        setattr(sys.modules[cls.__module__], f"__{cls.__name__}", test_obj)  # as pyuvm.test names it
        return cls

    return decorator
