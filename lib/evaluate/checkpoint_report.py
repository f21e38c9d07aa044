"""Bring your own model: the robustness report of a user's checkpoint on a real test split.

:func:`evaluate_checkpoint` loads the checkpoint (:func:`lib.evaluate.checkpoint.load_checkpoint`:
tensors only, its normalisation inside the model), takes ``n`` test images with every class in
proportion (:func:`lib.evaluate.eval_images`), runs :func:`lib.robustness.robustness_report` (the
attack ladder with its sanity checks) and writes, into ``out``:

- ``robustness_report.csv``: the long report, one row per attack, eps and step count;
- ``sanity_checks.csv`` / ``.md``: the checks and whether they passed;
- ``compact_table.csv`` / ``.md``: clean, FGSM, PGD-k, APGD-CE, APGD-T, the AutoAttack-style chain
  and the per-image worst case at each eps (in /255), with n and the 95% Wilson interval over the test images
  (:func:`lib.robustness.compact_table`, the table notebook 03 shows);
- ``checkpoint.json``: what was loaded and how (layout, normalisation, data, n, seed).

Bad inputs fail before any attack runs (:func:`resolve_device`, :func:`prepare_out`, the counts,
the checkpoint, the data, APGD-T's class count), with one message naming the option or file.
``python -m lib.evaluate`` is the same from the command line (:mod:`lib.evaluate.__main__`).
"""
from __future__ import annotations

import inspect
import json
import numbers
import os
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from ..data.real import REAL_DATASETS, load_real
from .checkpoint import CheckpointError, head_mismatch, load_checkpoint
from .crafted import eval_images
from .own_model import load_own_model

__all__ = ["evaluate_checkpoint", "eval_dataset", "compact_markdown", "resolve_device", "prepare_out"]
REPORT_FILES = ("robustness_report.csv", "sanity_checks.csv", "sanity_checks.md", "compact_table.csv",
                "compact_table.md", "checkpoint.json")
APGD_T_MIN_CLASSES = 4  # the targeted DLR loss divides by z_pi1 - (z_pi3 + z_pi4) / 2


def resolve_device(device: str | None) -> torch.device:
    """``device`` (None: CUDA when available, else the CPU) as a :class:`torch.device` this
    machine has; an unparseable name or an absent device raises ValueError naming ``--device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a device name; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device here (torch.cuda.is_available() is False); "
                             "use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device}: no MPS device here; use --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"--device {device}: only cpu, cuda, cuda:N and mps are supported")
    return dev


def prepare_out(out: str | Path, overwrite: bool = False) -> list[Path]:
    """Make the report folder ``out`` and check a file can be written in it, before any attack
    runs (so an unusable folder costs nothing). ``out`` must be a folder that does not exist or is
    empty; one that holds files is refused unless ``overwrite`` (then the report's files there are
    replaced). Raises ValueError naming ``--out``; returns the folders it made (for a caller that
    wants to remove them when the evaluation then fails)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file, not a folder; give a new folder for the report")
    if out.is_dir() and not overwrite:
        held = sorted(p.name for p in out.iterdir())
        if held:
            raise ValueError(f"--out {out} already holds {len(held)} file(s) ({', '.join(held[:3])}"
                             f"{', ...' if len(held) > 3 else ''}), e.g. an earlier report; give a new folder, "
                             "or add --overwrite to replace them")
    made = [p for p in (out, *out.parents) if not p.exists()][::-1]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        for p in reversed(made):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise ValueError(f"--out {out} cannot be used for the report ({e.strerror or e}); "
                         "give a folder you can write in") from None
    return made


def _first_image_size(folder: Path) -> int | None:
    from PIL import Image

    from ..data.readers import IMAGE_EXTENSIONS

    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            with Image.open(p) as im:
                return min(im.size)
    return None


def eval_dataset(data: str | Path, root: str | Path | None = None, split: str = "test", size: int | None = None):
    """The ``split`` of ``data``: a name of :data:`lib.data.real.REAL_DATASETS` (``cifar10`` reads
    the release's pickles or an ImageFolder, ``cifar100``, ``gtsrb``, ...; ``root`` None: its
    default folder under ``data/``), or the path of an ImageFolder (``<path>/<split>/<class>/*``, or
    ``<path>/<class>/*`` when there is no ``<split>`` folder), read at ``size`` px (None: the
    dataset's native size; for a folder, the shorter side of its first image)."""
    name = str(data)
    if name in REAL_DATASETS:
        return load_real(name, split, root=root, size=size)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(f"--data {name!r} is neither a dataset name ({', '.join(sorted(REAL_DATASETS))}) "
                         "nor an existing ImageFolder directory")
    folder = path / split if (path / split).is_dir() else path
    size = size or _first_image_size(folder)
    if size is None:
        raise ValueError(f"no images under {folder}")
    return load_real("image_folder", folder.name, root=folder.parent, size=size)


def compact_markdown(compact: pd.DataFrame) -> str:
    """The compact table as Markdown: one row per attack, one column per eps (/255), each cell the
    accuracy in % with its interval; n and the interval kind in the caption line."""
    t = compact.copy()
    t["cell"] = [f"{100 * a:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for a, lo, hi in zip(t.acc, t.low, t.high)]
    t["eps"] = [f"eps {e:g}/255" if e > 0 else "eps 0" for e in t.eps_255]
    lines = []
    for method, g in t.groupby("method", sort=False):
        wide = g.pivot_table(index="attack", columns="eps", values="cell", aggfunc="first", sort=False)
        wide = wide.reindex(index=list(dict.fromkeys(g.attack)), columns=list(dict.fromkeys(g.eps))).fillna("")
        lines.append(f"**{method}**: robust accuracy in % [95% interval; {g.interval.iloc[0]}], "
                     f"n = {int(g.n.iloc[0])} test images\n")
        lines.append(wide.reset_index().rename(columns={"attack": "attack"}).to_markdown(index=False))
        lines.append("")
    return "\n".join(lines)


def evaluate_checkpoint(arch: str | None, weights: str | Path | None, data: str | Path = "cifar10",
                        eps: Sequence[float] = (8 / 255,),
                        *, data_root: str | Path | None = None, n: int = 1000, num_classes: int | None = None,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                        norm: str | None = None, arch_kw: dict | None = None, size: int | None = None,
                        pgd_steps: Sequence[int] = (10, 20, 40), apgd_steps: int = 100,
                        square_queries: int | None = None, seed: int = 0, device: str | None = None,
                        batch_size: int = 256, out: str | Path | None = None, name: str | None = None,
                        progress: bool = True, apgd: bool = True, model_file: str | Path | None = None,
                        factory: str | None = None) -> dict:
    """Robustness report of the checkpoint ``weights`` of ``arch`` on ``n`` test images of ``data``;
    or, with ``arch`` None, of your own network: ``model_file`` (a ``torch.export`` ``.pt2`` or
    TorchScript) or ``factory`` (``package.module:function``, with ``weights``), see
    :mod:`lib.evaluate.own_model`.

    ``eps``: L-inf budgets in pixel units of [0, 1] images (8/255 = 0.0314). ``pgd_steps``: the
    PGD step counts of the ladder (the compact table shows the largest); ``apgd_steps``: APGD-CE /
    APGD-T iterations; ``square_queries``: passed to ``robustness_report`` when it takes it (the
    Square attack). ``num_classes`` None: the data's class count must equal the checkpoint's head;
    given: it must equal the head, and the data may hold fewer classes (its labels taken as the
    model's first ones). ``mean``/``std``/``norm``/``arch_kw``: see
    :func:`~lib.evaluate.checkpoint.load_checkpoint`.
    ``device`` None: CUDA when available (:func:`resolve_device`). ``out``: folder for the files
    listed in the module docstring (None: nothing written), made and checked writable before any
    attack runs (:func:`prepare_out`; files of an earlier report there are replaced: the command
    line refuses that without ``--overwrite``). ``name``: the model's label in the tables (default:
    the weights file's stem). ``apgd`` False: no APGD-CE, APGD-T or AutoAttack-style rows (APGD-T
    needs at least 4 classes; a smaller head without ``apgd=False`` is refused before any attack).

    Returns ``{"report", "checks", "compact", "info", "files"}`` (DataFrames, the load info, the
    paths written); ``info["notes"]`` states what was evaluated differently from what was asked.
    """
    from ..robustness import compact_table, robustness_report

    eps = _check_args(eps, n, pgd_steps, apgd_steps, batch_size, square_queries)
    device = resolve_device(device)
    if square_queries is not None and "square_queries" not in inspect.signature(robustness_report).parameters:
        raise ValueError("this lib.robustness.robustness_report has no Square attack (square_queries)")
    if out is not None:
        prepare_out(out, overwrite=True)
    if model_file is not None or factory is not None:
        if arch is not None:
            raise CheckpointError("--arch names an architecture of lib.models; your own network comes with --model "
                                  "or --factory instead")
        model, info = load_own_model(model_file, factory=factory, weights=weights, num_classes=num_classes,
                                     mean=mean, std=std, norm=norm)
    else:
        model, info = load_checkpoint(arch, weights, num_classes=num_classes, mean=mean, std=std, norm=norm,
                                      arch_kw=arch_kw)
        _check_head(info, info["num_classes"], num_classes, apgd, None)  # before the data is read
    test = eval_dataset(data, data_root, "test", size)
    classes = list(getattr(test, "classes", []))
    model.to(device)
    try:
        x, y = eval_images(test, n, seed, batch_size)
    except OSError as e:  # an image PIL cannot decode, from a reader that does not name the file
        why = str(e).strip().splitlines()[-1] if "Original Traceback" in str(e) else str(e)  # a DataLoader worker's
        raise ValueError(f"--data {data}: a test image cannot be read ({type(e).__name__}: {why})") from None
    info["num_classes"] = _check_forward(model, x[:1].to(device), info["arch"], size)
    _check_head(info, info["num_classes"], num_classes, apgd, classes)
    kw = dict(eps_list=eps, pgd_steps=tuple(pgd_steps), apgd_steps=apgd_steps, batch_size=batch_size, seed=seed,
              progress=progress, apgd=apgd)
    if square_queries is not None:
        kw["square_queries"] = square_queries
    report, checks = robustness_report(model, (x, y), **kw)
    label = name or Path(weights if model_file is None else model_file).stem
    report.insert(0, "method", label)
    report.insert(1, "seed", seed)
    compact = compact_table(report, eps, max(pgd_steps))
    info.update(data=str(data), data_root=None if data_root is None else str(data_root), n=len(y), seed=seed,
                eps_255=[e * 255 for e in eps], classes=len(classes) or info["num_classes"], device=str(device),
                notes=_notes(n, len(y), apgd))
    files = []
    if out is not None:
        out = Path(out).expanduser()
        report.to_csv(out / "robustness_report.csv", index=False)
        checks.to_csv(out / "sanity_checks.csv", index=False)
        (out / "sanity_checks.md").write_text(checks.to_markdown(index=False) + "\n")
        compact.to_csv(out / "compact_table.csv", index=False)
        (out / "compact_table.md").write_text(compact_markdown(compact) + "\n")
        (out / "checkpoint.json").write_text(json.dumps(info, indent=2) + "\n")
        files = [out / f for f in REPORT_FILES]
    return {"report": report, "checks": checks, "compact": compact, "info": info, "files": files}


def _check_args(eps, n, pgd_steps, apgd_steps, batch_size, square_queries) -> list[float]:
    """The budgets as floats, after checking every count (ValueError naming the option)."""
    eps = [float(e) for e in eps]
    if not eps or not all(0 < e <= 1 for e in eps):  # also refuses nan
        raise ValueError(f"--eps: budgets must be in (0, 1] of the pixel range (e.g. 8/255), got {eps}")
    counts = [("--n", n, 1), ("--apgd-steps", apgd_steps, 1), ("--batch-size", batch_size, 1),
              ("--square-queries", square_queries, 0), *(("--pgd-steps", k, 1) for k in pgd_steps)]
    for option, v, least in counts:
        if v is not None and (isinstance(v, (bool, float)) or not isinstance(v, numbers.Integral) or v < least):
            raise ValueError(f"{option} must be a whole number >= {least}, got {v!r}")
    if len(set(pgd_steps)) < 2:
        raise ValueError(f"give at least two PGD step counts (got {list(pgd_steps)}): the sanity check "
                         "'non-increasing in steps' compares them, e.g. --pgd-steps 10 40")
    return eps


def _check_head(info: dict, head: int, num_classes: int | None, apgd: bool, classes: list | None) -> None:
    """The model's ``head`` (its outputs) against ``--num-classes``, APGD-T's minimum and the data's
    ``classes`` (None: not read yet); ValueError naming the fix."""
    if head_mismatch(info["weights"], head, num_classes):
        raise ValueError(head_mismatch(info["weights"], head, num_classes))
    if apgd and head < APGD_T_MIN_CLASSES:
        raise ValueError(f"{info['weights']} has a {head}-class head, and APGD-T (targeted DLR loss) needs "
                         f"at least {APGD_T_MIN_CLASSES} classes; add --no-apgd (apgd=False) to run the report "
                         "without APGD-CE, APGD-T and the AutoAttack-style chain")
    if classes and (len(classes) > head or (num_classes is None and len(classes) != head)):
        raise ValueError(f"the data has {len(classes)} classes but the checkpoint's head {head}; "
                         f"pass --num-classes {head} if the data's labels 0..{len(classes) - 1} "
                         "are the model's first classes")


def _check_forward(model, x, arch: str, size: int | None) -> int:
    """One image through the model before any attack, returning its number of outputs: an image
    size the architecture cannot take (``--size 1``: pooling below one pixel) is a ValueError naming
    ``--size``, not a traceback."""
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        why = " ".join(str(e).strip().splitlines()[-1:])[:300]
        given = f"--size {size}" if size is not None else "the data's own size; set --size"
        shape = f"{x.shape[-2]}x{x.shape[-1]}"
        raise ValueError(f"--arch {arch} cannot classify {shape} px images ({given}): {why}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(f"{arch} must return logits of shape (batch, classes), got "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return int(out.shape[1])


def _notes(n_asked: int | None, n: int, apgd: bool) -> list[str]:
    """What the report evaluated differently from what was asked, stated in its output."""
    notes = []
    if n_asked is not None and n_asked > n:
        notes.append(f"--n {n_asked} asked for, but the test split holds only {n} images: all {n} were evaluated")
    if not apgd:
        notes.append("--no-apgd: APGD-CE, APGD-T and the AutoAttack-style chain were not run; the worst case is "
                     "over FGSM and PGD only, and the Square sanity check has nothing to compare (it shows FAIL)")
    return notes
