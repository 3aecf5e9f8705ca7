# Two commands set everything up on a fresh machine:
#   make sim    build the Verilator harness and run the cocotb testbench (results.xml)
#   make test   the whole suite through pytest (unit tests + cocotb tests)
#   make bench  wall-clock benchmarks under Verilator (tables; JSON in sim_build/)
#   make bench-compare BASE=<rev> [ROUNDS=3]  the benchmarks of BASE and of this checkout in turn
#   make lint   ruff check and format check (make format applies them)
# FABRIC=tlp|fast picks the PCIe fabric (docs/architecture.md, Simulation): make sim and the
# tools default to the TLP-accurate one, make test and make regress to the transaction-level
# one (make test also runs the PCIe-level modules on TLP), make bench runs both side by side;
# make regress FABRIC=both runs every seed on both and compares the scoreboards.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WAVES  ?= 0
NUM_VFS ?= 8
FABRIC ?=
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: sim test unit lint format lspci shell docs bench bench-compare clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m tb.tools.toolchain
	touch $(STAMP)

sim: $(STAMP)
	WAVES=$(WAVES) FABRIC=$(FABRIC) $(PY) -m tb.tools.runner $(if $(filter 1,$(WAVES)),--waves)

test: $(STAMP)
	FABRIC=$(or $(FABRIC),fast) $(PY) -m pytest -n 2 --dist worksteal tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

unit: $(STAMP)
	$(PY) -m pytest tests -m "not sim"

lspci: $(STAMP)
	$(PY) -m tb.tools.lspci --num-vfs $(NUM_VFS)

# IPython inside a running simulation (IOMMU=1 for VT-d); installs the shell extra
IOMMU ?= 0
shell: $(STAMP)
	$(PY) -m pip install --quiet -e ".[shell]"
	$(VENV)/bin/sriov-nic shell --num-vfs $(NUM_VFS) $(if $(filter 1,$(IOMMU)),--iommu)

bench: $(STAMP)
	$(PY) -m tb.bench $(if $(FABRIC),--fabric $(FABRIC))

bench-compare: $(STAMP)
	$(if $(BASE),,$(error make bench-compare needs BASE=<revision>))
	$(PY) -m tb.bench.compare $(BASE) $(if $(ROUNDS),--rounds $(ROUNDS))

docs: $(STAMP)
	$(PY) -m datasheet.docgen docs
	$(PY) -m tb.tools.apidocs

clean:
	rm -rf sim_build results.xml

# Coverage-driven verification (docs/verification.md):
#   make regress SEEDS=20   the pyuvm random tests over SEEDS seeds on JOBS workers, merged
#                           coverage, sim_build/regress/report.{txt,html}; the tests too slow
#                           for make test on the TLP fabric; then the hostile-VF campaign
#   make regress FABRIC=both  every seed on both fabrics, scoreboard events compared
#   make testplan           every testplan.yaml feature with its tests, their results and coverage
SEEDS ?= 20
JOBS  ?= 2
.PHONY: regress testplan fuzz

regress: $(STAMP)
	$(PY) -m tb.tools.regress --seeds $(SEEDS) --jobs $(JOBS) $(if $(FABRIC),--fabric $(FABRIC))

testplan: $(STAMP)
	-$(PY) -m pytest tests -m "not sim" -q -p no:cacheprovider --junitxml=sim_build/pytest.xml
	$(PY) -m tb.tools.testplan

# Hostile-VF campaign (docs/security.md):
#   make fuzz SEEDS=50      SEEDS seeds x EPISODES episodes on JOBS workers, sim_build/fuzz/report.txt
EPISODES ?= 8
fuzz: $(STAMP)
	$(PY) -m tb.fuzz --seeds $(SEEDS) --jobs $(JOBS) --episodes $(EPISODES) $(if $(FABRIC),--fabric $(FABRIC))
