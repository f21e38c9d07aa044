"""Test-wide settings: nothing a test runs writes into the user's figures/ or data/store/."""
import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


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
