"""Interactive explorers, one module per study. Each widget is a thin ``ipywidgets`` shell
(:func:`explorer`) over a plain function that tests call directly (``attack_panel``,
``transfer_panel``, ...), so what a reader sees is what the tests check; a headless run prints one
line instead of the controls, and the notebook draws the same function's figure at its defaults.
Notebook 06's explorer reads the study's model zoo and evaluation set, so it lives on the studies
floor: :mod:`lib.studies.attention_explorer`."""
from .attack import attack_explorer, attack_panel
from .backdoor import trigger_explorer, trigger_panel
from .continual import continual_explorer, continual_panel
from .defences import strip_explorer, strip_panel
from .explorer import explorer
from .gan import latent_explorer, latent_panel
from .transfer import transfer_explorer, transfer_panel

__all__ = ["attack_explorer", "attack_panel", "continual_explorer",
           "continual_panel", "explorer", "latent_explorer", "latent_panel", "strip_explorer", "strip_panel",
           "transfer_explorer", "transfer_panel", "trigger_explorer", "trigger_panel"]
