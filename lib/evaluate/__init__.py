"""Evaluation entry points: craft-once transfer evaluation, and bring-your-own-model reports.

- :mod:`lib.evaluate.crafted`: adversarial images crafted *once* on a source model and scored on
  many targets (:func:`craft`, :func:`transfer_scores`, :func:`transfer_eval`,
  :func:`attack_table`, :func:`eval_images`), so models compare image for image.
- :mod:`lib.evaluate.checkpoint`: a user's checkpoint (safetensors, or a ``.pt`` state dict read
  with ``weights_only=True``) loaded into :func:`lib.models.build` with its normalisation
  (:func:`load_checkpoint`, :class:`CheckpointError`, :data:`NORM_PRESETS`).
- :mod:`lib.evaluate.checkpoint_report`: :func:`evaluate_checkpoint`, the robustness report with
  sanity checks and the compact table of such a checkpoint on a real test split, written to a
  folder; ``python -m lib.evaluate`` (:mod:`lib.evaluate.__main__`) runs it from the shell.
"""
from __future__ import annotations

from .checkpoint import NORM_PRESETS, CheckpointError, guess_arch, load_checkpoint, read_state_dict
from .checkpoint_report import compact_markdown, eval_dataset, evaluate_checkpoint
from .crafted import attack_table, craft, craft_sets, eval_images, transfer_eval, transfer_scores

__all__ = ["craft", "craft_sets", "transfer_scores", "transfer_eval", "attack_table", "eval_images", "load_checkpoint",
           "read_state_dict", "guess_arch", "CheckpointError", "NORM_PRESETS", "evaluate_checkpoint",
           "eval_dataset", "compact_markdown"]
