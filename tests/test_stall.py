"""The kernel watchdog (lib.stall): a kernel that goes idle while papermill waits is killed and
its notebook run again, instead of the run hanging for ever; a busy kernel is left alone.

A wedge is simulated by the kernel stopping itself (SIGSTOP): papermill then waits for a reply
that never comes, as it did when ipykernel lost one (lib/stall.py says when)."""
import signal
import time

import nbformat
import pytest

from lib.stall import STALL_ENV, KernelWatch, stall_seconds
from lib.workbook import run_notebook

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")


def _notebook(tmp_path, first_cell: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(first_cell),
                nbformat.v4.new_code_cell(f"open({str(tmp_path / 'finished')!r}, 'w').write('yes')")]
    path = tmp_path / "wedge.ipynb"
    nbformat.write(nb, path)
    return path


def _stop_self(tmp_path, times: int) -> str:
    """Cell source: count this attempt in a file, and stop the kernel on the first ``times``."""
    tries = tmp_path / "tries"
    return (f"import os, signal\np = {str(tries)!r}\nn = int(open(p).read()) + 1 if os.path.exists(p) else 1\n"
            f"open(p, 'w').write(str(n))\nif n <= {times}:\n    os.kill(os.getpid(), signal.SIGSTOP)\n")


def test_a_wedged_kernel_is_killed_and_its_notebook_run_again(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(STALL_ENV, "3")
    path = _notebook(tmp_path, _stop_self(tmp_path, times=1))
    t0 = time.monotonic()
    run_notebook(path, {}, tmp_path / "out", timeout=60)  # the cell timeout only ends the test if the watchdog fails
    assert time.monotonic() - t0 < 90
    assert (tmp_path / "tries").read_text() == "2"  # stopped once, then ran through
    assert (tmp_path / "finished").read_text() == "yes"
    assert "running it again" in capfd.readouterr().err


def test_a_kernel_that_wedges_again_fails_the_notebook_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(STALL_ENV, "3")
    path = _notebook(tmp_path, _stop_self(tmp_path, times=5))
    with pytest.raises(RuntimeError, match=rf"twice; rerun it \(--resume\), or set {STALL_ENV}=0"):
        run_notebook(path, {}, tmp_path / "out", timeout=60)
    assert (tmp_path / "tries").read_text() == "2"
    assert not (tmp_path / "finished").exists()


def test_a_busy_kernel_is_not_killed(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(STALL_ENV, "2")
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 6:\n    pass\n"
    path = _notebook(tmp_path, busy)
    with KernelWatch() as watch:
        pass  # the watchdog a run uses reads the same setting
    assert watch.seconds == 2
    run_notebook(path, {}, tmp_path / "out")
    assert (tmp_path / "finished").read_text() == "yes"
    assert "killed it" not in capfd.readouterr().err


def test_the_setting_is_checked(monkeypatch):
    monkeypatch.setenv(STALL_ENV, "soon")
    with pytest.raises(ValueError, match="give the idle seconds as a number"):
        stall_seconds()
    monkeypatch.setenv(STALL_ENV, "0")
    with KernelWatch() as watch:
        assert watch._thread is None
    monkeypatch.delenv(STALL_ENV)
    assert stall_seconds() == 180.0
