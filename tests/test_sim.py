"""Each cocotb module runs in its own Verilator process (the harness is built once).

Every module runs on ``$FABRIC`` (``make test`` sets the transaction-level ``fast`` fabric);
the PCIe-level modules run on the TLP fabric too.  Tests that need the TLP fabric (TLP
fields, DMA in flight) ask for it themselves; the ones too slow there run in ``make regress``.
"""

import pytest

import fabric
from tb.paths import BUILD_DIR
from tb.tools.runner import PCIE_LEVEL_MODULES, SIM_MODULES, run


@pytest.mark.sim
@pytest.mark.parametrize("module", SIM_MODULES)
def test_cocotb_module(module):
    run([module])


@pytest.mark.sim
@pytest.mark.parametrize("module", PCIE_LEVEL_MODULES)
def test_cocotb_module_on_the_tlp_fabric(module):
    if fabric.resolve() == fabric.TLP:
        pytest.skip("the suite runs on the TLP fabric already")
    run([module], fabric=fabric.TLP)


@pytest.mark.sim
def test_waves_write_an_fst(tmp_path):
    """`make sim WAVES=1`: the FST build (with LZ4 from PyPI sources if needed) records a waveform."""
    dump = BUILD_DIR / "dump.fst"
    dump.unlink(missing_ok=True)
    run(["tb.tests.test_enumeration"], testcase="pf_enumerates", waves=True, results_xml=tmp_path / "r.xml")
    data = dump.read_bytes()
    assert len(data) > 64 and data[0] == 0  # FST_BL_HDR block first
