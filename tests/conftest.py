"""Test-wide settings: nothing a test runs writes into the user's figures/ or data/store/, and
under pytest-xdist (``make test`` runs two workers) each worker gets its share of the threads and
the long notebook tests are handed out first."""
import os

import pytest
import torch


def _threads() -> int:
    """This process's share of ``OMP_NUM_THREADS`` (else the cores): all of it without xdist, an
    equal share per xdist worker, so two workers on two cores do not oversubscribe them (two
    one-thread processes also train faster than one two-thread process on this kind of CPU:
    ``JOBS`` in the Makefile)."""
    total = int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, min(2, total) // workers) if workers > 1 else min(2, total)


THREADS = _threads()
torch.set_num_threads(THREADS)
if os.environ.get("PYTEST_XDIST_WORKER"):  # notebook kernels and subprocesses inherit the worker's share
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

# The slowest tests (seconds on the 2-core CI machine, one thread each; benchmarks/results/suite_timing.json)
# go first: xdist hands work out in collection order, so a long test left to the end would run alone while
# the other worker idles (longest-first scheduling). Tests sharing a store carry one xdist_group mark and
# run in one worker, in order.
SLOW_FIRST = ("test_dry_run.py::test_full_dry_run", "test_notebooks.py::test_01", "test_notebooks.py::test_02",
              "test_notebooks.py::test_03", "test_notebook_07_unrestricted_gan.py::test_07",
              "test_notebook_05_backdoor_poison.py::test_05", "test_notebook_08_backdoor_defences.py::test_08",
              "test_notebook_04_continual.py::test_04", "test_notebook_06_attention.py::test_06")


def _rank(item) -> int:
    name = item.nodeid.rsplit("/", 1)[-1]
    return next((i for i, key in enumerate(SLOW_FIRST) if name.startswith(key)), len(SLOW_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: the rest keep their files' order


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("workbook")
    old = {k: os.environ.get(k) for k in ("WORKBOOK_STORE", "WORKBOOK_FIGURES", "WORKBOOK_OUTPUTS", "WORKBOOK_DOCS")}
    os.environ["WORKBOOK_STORE"] = str(root / "store")
    os.environ["WORKBOOK_FIGURES"] = str(root / "published")
    os.environ["WORKBOOK_OUTPUTS"] = str(root / "figures")
    os.environ["WORKBOOK_DOCS"] = str(root / "docs")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
