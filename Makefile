# The workbook's commands. `make workbook` and `make test` build .venv first when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
READY  := $(VENV)/.ready
# Two threads per process keeps a 2-core machine responsive; raise it on bigger machines.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg
# Notebooks at a time in `make workbook` (each after those whose models it uses); the threads
# above are shared out between them. Two one-thread kernels train about 1.4x faster than one two-thread kernel.
JOBS ?= 2
# pytest-xdist workers in `make test`, each with its share of OMP_NUM_THREADS (0: one process). On the 2-core
# CI machine two one-thread workers took as long as one two-thread process (the tests' work uses both
# threads; benchmarks/results/suite_timing_xdist2.json), so 0 there; on a machine with more cores, e.g.
# TEST_WORKERS=4 OMP_NUM_THREADS=8. Tests sharing a store run in one worker (GROUPS in tests/conftest.py).
TEST_WORKERS ?= 0

.PHONY: venv workbook test lint lab bench gpu-check clean-runs

venv: $(READY)

$(READY): requirements.txt requirements-test.txt
	@echo "[venv] creating $(VENV) with $(PYTHON) (torch comes from the local wheel cache when present)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# test-only reference implementations, without their (conflicting, unused) pins
	$(PY) -m pip install --quiet --no-deps -r requirements-test.txt
	@# make `import lib` work from any folder (notebook kernels run in notebooks/)
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'workbook.pth').write_text(str(pathlib.Path.cwd()) + '\n')"
	touch $(READY)

workbook: $(READY)
	$(PY) -m lib.workbook --jobs $(JOBS) $(ARGS)

test: $(READY)
	$(VENV)/bin/ruff check lib tests benchmarks
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(READY)
	$(VENV)/bin/ruff check lib tests benchmarks

# without the MPLBACKEND=Agg exported above: the kernels would show each figure as its text repr
lab: $(READY)
	env -u MPLBACKEND $(VENV)/bin/jupyter lab notebooks/

bench: $(READY)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# on CUDA: the smoke workbook and the full dry run, timed with GPU memory and utilisation
# (benchmarks/results/gpu_check.json); elsewhere one line and exit 0
gpu-check: $(READY)
	$(PY) benchmarks/gpu_check.py

clean-runs:
	rm -rf runs
