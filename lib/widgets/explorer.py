"""The explorer shell every study's widget shares: sliders over a plain drawing function, and one
printed line instead of widgets in a headless run."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt

from ..stall import HEADLESS_ENV


def explorer(draw, readout=None, **sliders):
    """ipywidgets sliders (updated on release) redrawing ``draw(**values) -> (fig, result)`` below
    them, with ``readout(result)`` (a line of text: the numbers the figure shows) under the figure.
    ``None`` and one printed line in a headless run (``WORKBOOK_HEADLESS=1``)."""
    import ipywidgets as W
    from IPython.display import display

    if os.environ.get(HEADLESS_ENV) == "1":
        # headless (papermill): no sliders, and no widget messages for the kernel to wedge on (ipykernel 7
        # lost an execute_reply after widget cells: lib.stall); the static figure beside it stands in
        print("explorer: open this notebook in JupyterLab to move its controls (a headless run draws the figure above)")
        return None
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
