"""A watchdog for a wedged notebook kernel: it kills a kernel that sits idle while papermill waits.

Why: on 2026-12-03 a cold ``make workbook`` run hung for an hour in notebook 03's widget cell.
The kernel had run that cell (its variables existed) and gone idle with no CPU, while nbclient
went on waiting for an ``execute_reply`` that never arrived. papermill sets no cell timeout by
default, so the run would have waited for ever. ipykernel 7 has known lost-message wedges on its
shell channel (ipython/ipykernel#1529, #1554). No cell here waits without computing: the
workbook does no network or sleep, and DataLoader workers are child processes, counted below.
So a kernel process tree that uses (almost) no CPU for ``seconds`` while a notebook runs is
wedged. Killing it turns the hang into nbclient's ``DeadKernelError`` within a second, and
:func:`lib.notebook_run.run_notebook` then runs the notebook again once; the store makes the rerun
cheap. nbclient's per-cell ``timeout`` would need one bound for cells that take seconds and for
cells that take hours (the full profile), so it cannot tell a wedge from a long cell.

Both wedges seen happened in explorer cells (03's, then 02's on 2026-12-06), whose widgets send
comm messages through the kernel's shell channel (nbclient#312 reports widget cells that block).
Headless runs now build no widgets (:data:`HEADLESS_ENV`); the watchdog stays for anything else.

Written by hand because neither papermill nor nbclient watches for this. psutil (already
installed with IPython) reads the process tree's CPU time.
"""
from __future__ import annotations

import os
import threading
import time

STALL_ENV = "WORKBOOK_STALL_SECONDS"
# set for the kernels lib.notebook_run.run_notebook starts: explorers (lib.widgets) then build no widgets, the
# cells where these wedges happened, since no reader can move a slider in a headless run
HEADLESS_ENV = "WORKBOOK_HEADLESS"
DEFAULT_SECONDS = 180.0
IDLE_CPU_SECONDS = 0.5  # less CPU than this over the whole window counts as idle


def stall_seconds() -> float:
    """The idle window from ``WORKBOOK_STALL_SECONDS`` (default 180; 0 turns the watchdog off)."""
    raw = os.environ.get(STALL_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_SECONDS
    except ValueError:
        raise ValueError(f"{STALL_ENV}={raw!r}: give the idle seconds as a number (0 turns the watchdog off)") from None


def _tree_cpu(proc) -> float:
    """CPU seconds used by ``proc`` and its descendants (those already reaped count through
    ``children_*``)."""
    import psutil

    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


class KernelWatch:
    """Context manager: while it is open, a thread watches this process's kernel children
    (``ipykernel_launcher``) and kills any whose process tree stays idle for ``seconds``.
    ``stalled`` then holds a line saying which kernel and for how long."""

    def __init__(self, seconds: float | None = None):
        self.seconds = stall_seconds() if seconds is None else float(seconds)
        self.poll = max(0.2, min(10.0, self.seconds / 6))
        self.stalled: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> KernelWatch:
        if self.seconds > 0:
            self._thread = threading.Thread(target=self._run, name="kernel-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _kernels(self, me) -> list:
        import psutil

        found = []
        for p in me.children(recursive=True):
            try:
                if any("ipykernel" in part for part in p.cmdline()):
                    found.append(p)
            except psutil.Error:
                pass
        return found

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        seen: dict[int, tuple[float, float]] = {}  # pid -> (CPU seconds, when they last moved)
        while not self._stop.wait(self.poll):
            now = time.monotonic()
            for k in self._kernels(me):
                try:
                    cpu = _tree_cpu(k)
                except psutil.Error:
                    continue
                if k.pid not in seen or cpu - seen[k.pid][0] > IDLE_CPU_SECONDS:
                    seen[k.pid] = (cpu, now)
                    continue
                last_cpu, since = seen[k.pid]
                if now - since >= self.seconds:
                    self.stalled = (f"kernel {k.pid} used {cpu - last_cpu:.2f} s of CPU in {now - since:.0f} s "
                                    f"while papermill waited for it (a lost kernel message); killed it")
                    try:
                        k.kill()
                    except psutil.Error:
                        pass
                    return
