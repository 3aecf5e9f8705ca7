"""testplan.yaml against the code (no simulator): CI fails if a testpoint has no test, names a
test that does not exist, or names a coverpoint the coverage model does not define."""

from tb.tools import testplan


def test_every_testpoint_has_tests_that_exist():
    points = testplan.load()
    assert points, "testplan.yaml has no features"
    problems = testplan.check(points, testplan.existing_tests(), testplan.regress_only_tests())
    assert not problems, "\n".join(problems)


def test_coverage_names_exist():
    names = testplan.coverage_names()
    unknown = [f"{tp.id}: {c}" for tp in testplan.load() for c in tp.coverage if c not in names]
    assert not unknown, "\n".join(unknown)


def test_the_uvm_tests_are_all_in_the_testplan():
    mapped = {ref for tp in testplan.load() for ref in tp.all_tests}
    uvm = testplan.existing_tests()["tb/tests/test_uvm.py"]
    assert uvm and not {f"tb/tests/test_uvm.py::{n}" for n in uvm} - mapped


def test_check_reports_missing_and_empty(tmp_path):
    existing = {"tb/tests/test_x.py": {"a"}}
    points = [
        testplan.Testpoint("p1", "", ["tb/tests/test_x.py::a"]),
        testplan.Testpoint("p2", "", []),
        testplan.Testpoint("p3", "", ["tb/tests/test_x.py::nope", "tb/tests/test_y.py::a"]),
    ]
    problems = testplan.check(points, existing)
    assert problems == [
        "p2: no test",
        "p3: tb/tests/test_x.py::nope: no such test in tb/tests/test_x.py",
        "p3: tb/tests/test_y.py::a: no such test module",
    ]


def test_a_regression_only_test_must_be_listed_under_regress(tmp_path):
    mod = tmp_path / "tb" / "tests" / "test_m.py"
    mod.parent.mkdir(parents=True)
    mod.write_text(
        "import cocotb, pyuvm\n@pyuvm.test(skip=REGRESS_ONLY)\nclass Long: pass\n"
        "@cocotb.test(skip=not SLOW_TESTS)\nasync def slow(dut): pass\n"
        "@cocotb.test(skip=slow_on_tlp())\nasync def big(dut): pass\n"
    )
    assert testplan.regress_only_in(mod) == {"Long", "slow"}
    existing = {"tb/tests/test_m.py": {"Long", "slow", "big"}}
    only = {"tb/tests/test_m.py": {"Long", "slow"}}
    ok = testplan.Testpoint("ok", "", ["tb/tests/test_m.py::big"], regress=["tb/tests/test_m.py::Long"])
    wrong = testplan.Testpoint("wrong", "", ["tb/tests/test_m.py::slow"])
    regress_only = testplan.Testpoint("none", "", [], regress=["tb/tests/test_m.py::Long"])
    assert testplan.check([ok, wrong, regress_only], existing, only) == [
        "wrong: tb/tests/test_m.py::slow: runs only in make regress: list it under regress",
        "none: no test in make test",
    ]


def test_parser_finds_cocotb_pyuvm_and_pytest_tests(tmp_path):
    mod = tmp_path / "tb" / "test_m.py"
    mod.parent.mkdir()
    mod.write_text(
        "import cocotb, pyuvm\n@cocotb.test()\nasync def a(dut): pass\n"
        "@cocotb.parametrize(n=[1])\n@cocotb.test()\nasync def b(dut, n): pass\n"
        "@pyuvm.test()\nclass C: pass\nasync def helper(dut): pass\n"
        "@pyuvm_test(timeout_time=2)\nclass D: pass\n"
    )
    assert testplan.tests_in(mod) == {"a", "b", "C", "D"}
    pym = tmp_path / "tests" / "test_p.py"
    pym.parent.mkdir()
    pym.write_text("def test_x(): pass\nclass TestY:\n    def test_z(self): pass\ndef helper(): pass\n")
    assert testplan.tests_in(pym) == {"test_x", "TestY::test_z"}
