"""Each cocotb test module runs in its own Verilator process (the harness is built once)."""

import pytest

from tb.paths import BUILD_DIR
from tb.tools.runner import SIM_MODULES, run


@pytest.mark.sim
@pytest.mark.parametrize("module", SIM_MODULES)
def test_cocotb_module(module):
    run([module])


@pytest.mark.sim
def test_waves_write_an_fst(tmp_path):
    """`make sim WAVES=1`: the FST build (with LZ4 from PyPI sources if needed) records a waveform."""
    dump = BUILD_DIR / "dump.fst"
    dump.unlink(missing_ok=True)
    run(["tb.tests.test_enumeration"], testcase="pf_enumerates", waves=True, results_xml=tmp_path / "r.xml")
    data = dump.read_bytes()
    assert len(data) > 64 and data[0] == 0  # FST_BL_HDR block first
