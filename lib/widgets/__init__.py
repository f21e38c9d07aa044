"""Interactive explorers, one module per study. Each widget is a thin ``ipywidgets`` shell
(:func:`explorer`) over a plain function that tests call directly (``attack_panel``,
``transfer_panel``, ...), so what a reader sees is what the tests check; a headless run prints one
line instead of the sliders, and the notebook draws the same function's figure at its defaults."""
from .attack import attack_explorer, attack_panel
from .explorer import explorer
from .transfer import transfer_explorer, transfer_panel

__all__ = ["attack_explorer", "attack_panel", "explorer", "transfer_explorer", "transfer_panel"]
