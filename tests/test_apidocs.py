"""The API reference builds without a single warning (``make docs``)."""

from tb.tools import apidocs


def test_api_reference_builds_warning_free(tmp_path):
    done = apidocs.build(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert {"model.html", "pcicore/raw.html", "tb/lib/system.html", "tb/tools/cli.html"} <= pages
    system = (tmp_path / "tb" / "lib" / "system.html").read_text()
    assert "build_system" in system and "bind_drivers" in system
