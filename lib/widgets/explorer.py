"""The explorer shell every study's widget shares: sliders over a plain drawing function, and one
printed line instead of widgets in a headless run."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt

from ..stall import HEADLESS_ENV


def headless() -> bool:
    """True in a headless run (``WORKBOOK_HEADLESS=1``, set by :func:`lib.notebook_run.run_notebook`),
    after printing the line that stands in for an explorer's controls. Every ``*_explorer`` asks
    before it builds a control: a widget opens a comm to the front end when it is created, and widget
    messages are where ipykernel 7 lost an execute_reply and wedged papermill runs (:mod:`lib.stall`)."""
    if os.environ.get(HEADLESS_ENV) != "1":
        return False
    print("explorer: open this notebook in JupyterLab to move its controls (a headless run draws the figure above)")
    return True


def explorer(draw, readout=None, **sliders):
    """ipywidgets sliders (updated on release) redrawing ``draw(**values) -> (fig, result)`` below
    them, with ``readout(result)`` (a line of text: the numbers the figure shows) under the figure.
    ``None`` and one printed line in a headless run (:func:`headless`; the callers have asked already,
    so their controls were never made)."""
    if headless():
        return None
    import ipywidgets as W
    from IPython.display import display

    out = W.Output()

    def redraw(**values):
        with out:
            out.clear_output(wait=True)
            fig, result = draw(**values)[:2]
            display(fig)
            plt.close(fig)
            if readout is not None:
                print(readout(result))

    for slider in sliders.values():
        slider.continuous_update = False  # redraw on release, not at every step of a drag
        slider.style.description_width = "initial"  # labels such as "step ×1/255" whole, not cut
    box = W.VBox([W.interactive(redraw, **sliders), out])
    display(box)
    return box
