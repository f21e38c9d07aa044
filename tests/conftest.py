"""Test-wide settings: nothing a test runs writes into the user's figures/ or data/store/; tests run
in the order their stores need (and, with pytest-xdist, ``make test TEST_WORKERS=N``, each worker
gets its share of the threads, the long tests are handed out first and tests sharing a store stay
in one worker)."""
import os

import pytest
import torch

from lib.workbook import run_threads


def _threads() -> int:
    """This process's share of ``OMP_NUM_THREADS`` (else the cores; at most 2 without xdist, as
    before): an equal share per xdist worker, so workers do not oversubscribe the cores."""
    total = run_threads()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, total // workers) if workers > 1 else min(2, total)


THREADS = _threads()
torch.set_num_threads(THREADS)
if os.environ.get("PYTEST_XDIST_WORKER"):  # notebook kernels and subprocesses inherit the worker's share
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

# The slowest tests go first (benchmarks/results/suite_timing.json), in the order their stores need: in one
# process notebook 03's test then fills the store the browser test opens; under xdist, which hands work
# out in collection order, no long test is left to run alone at the end while other workers idle.
SLOW_FIRST = ("test_dry_run.py::test_full_dry_run", "test_notebooks.py::test_01", "test_notebooks.py::test_02",
              "test_notebooks.py::test_03", "test_lab_browser.py::", "test_notebook_07_unrestricted_gan.py::test_07",
              "test_notebook_05_backdoor_poison.py::test_05", "test_notebook_08_backdoor_defences.py::test_08",
              "test_notebook_04_continual.py::test_04", "test_notebook_06_attention.py::test_06")
# Tests that share a worker's session store run in one worker, in this order: notebooks 02 and 05 reuse the
# base A notebook 01's test trained (which must find the store empty: it checks that it trains), and the
# browser test opens notebook 03 on the store test_03 filled. Declared here by node id, not with xdist's
# `xdist_group` mark: under pytest 9.2, `--dist loadgroup` silently stops grouping (pytest-xdist issue
# #1386: it marks a group by rewriting the node id, which pytest no longer honours), so the scheduler below
# reads this table instead.
GROUPS = {"bases": ("test_notebooks.py::test_01", "test_notebooks.py::test_02",
                   "test_notebook_05_backdoor_poison.py::test_05"),
          "adversarial": ("test_notebooks.py::test_03", "test_lab_browser.py::")}


def _name(nodeid: str) -> str:
    return nodeid.rsplit("/", 1)[-1]


def _rank(item) -> int:
    return next((i for i, key in enumerate(SLOW_FIRST) if _name(item.nodeid).startswith(key)), len(SLOW_FIRST))


def group_of(nodeid: str) -> str:
    """The xdist work unit of a test: its group in :data:`GROUPS`, else the test alone."""
    return next((g for g, keys in GROUPS.items() if _name(nodeid).startswith(keys)), nodeid)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)  # stable: the rest keep their files' order


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: optional where it is not installed
def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling (whole work units to one worker, handed out in collection order)
    with :func:`group_of` as the unit."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


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


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A tiny CIFAR-10 release (``cifar-10-batches-py``: 4 training and 2 test images per class) for the
    bring-your-own-model tests."""
    import lib.data.fixtures as F

    root = tmp_path_factory.mktemp("cifar10")
    F.write_cifar10_batches(root, per_class={"train": 4, "test": 2})
    return root
