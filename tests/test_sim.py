"""Each cocotb test module runs in its own Verilator process (the harness is built once)."""

import pytest

from tb.runner import SIM_MODULES, run


@pytest.mark.sim
@pytest.mark.parametrize("module", SIM_MODULES)
def test_cocotb_module(module):
    run([module])
