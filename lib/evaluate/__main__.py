"""``python -m lib.evaluate``: the robustness report of your own checkpoint.

Your own network comes as ``--model model.pt2`` (``torch.export``), ``--model model.pt``
(TorchScript) or ``--factory package.module:function --weights FILE`` instead of ``--arch``
(:mod:`lib.evaluate.own_model`). Example (the shared ResNet-20, trained on ImageNet-normalised
CIFAR-10, on CIFAR-10's official test split, which it never saw)::

    python -m lib.evaluate --arch resnet20 --weights ../shared/weights/resnet20-cifar10/resnet20-12fca82f.th \\
        --data cifar10 --data-root ../shared/data/cifar10-jpg-official-test --norm imagenet --eps 8/255 \\
        --n 200 --apgd-steps 25 --out runs/byo-resnet20

Prints the compact table (clean, FGSM, PGD, APGD-CE, APGD-T, worst case per eps, with n and
intervals) and the sanity checks, and writes them with the long report into a new folder: ``--out``,
which must not exist or be empty (``--overwrite`` replaces the files of an earlier report there),
or by default ``runs/evaluate/<name>-<UTC time>``, so no report overwrites another.

Eps (``--eps``, L-inf, in pixels of [0, 1] images): ``a/b`` is the fraction as written (8/255);
a number >= 1 counts steps of 1/255 (8 means 8/255, 1 means 1/255; above 255 is refused); a number
in (0, 1) is the fraction itself (0.0314); the budget must be finite and in (0, 1].

Every input is checked before the evaluation starts (device, output folder, counts, eps; then the
checkpoint and the data). Exit status: 0 done; 2 bad input (one line on stderr naming the option or
file and the fix, never a traceback); 3 with ``--fail-on-checks`` when a sanity check failed.
"""
from __future__ import annotations

import argparse
import pickle
import re
import sys
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from ..cli import OneLineParser, whole_number
from ..data import DatasetNotFoundError
from ..data.base import DataError
from ..data.real import REAL_DATASETS
from ..data.safe_pickle import UnsafePickleError
from ..models import ARCHS
from .checkpoint import NORM_PRESETS, CheckpointError
from .checkpoint_report import compact_markdown, evaluate_checkpoint, prepare_out, resolve_device

EPS_RULE = ("Eps (--eps, L-inf, in pixels of [0, 1] images): a/b is the fraction as written (8/255); a number "
            ">= 1 counts steps of 1/255 (8 means 8/255, 1 means 1/255; above 255 is refused); a number in (0, 1) "
            "is the fraction itself (0.0314). The budget must be finite and in (0, 1].")
EXIT_STATUS = ("Exit status: 0 done; 2 bad input, checked before the evaluation starts (one line on stderr "
               "naming the option or file and the fix); 3 with --fail-on-checks when a sanity check failed.")
EPS_FORMS = "8/255 (a fraction as written), 8 (a count of 1/255 steps, 1..255) or 0.0314 (a fraction in (0, 1))"
# what a bad checkpoint, dataset, image or folder raises; each becomes one line and exit status 2
BAD_INPUT = (CheckpointError, DataError, UnsafePickleError, pickle.UnpicklingError, OSError, ValueError)


def parse_eps(text: str) -> float:
    """The L-inf budget ``text`` as a float in (0, 1]: ``a/b`` as written, a number >= 1 as
    ``n/255`` (at most 255), a number in (0, 1) as it is; anything else (nan, inf, 0, negative,
    above 255, a fraction above 1) is refused naming the value and the allowed forms."""
    raw = text.strip()
    try:
        v = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give {EPS_FORMS}") from None
    if "/" not in raw and v >= 1:
        if v > 255:
            raise argparse.ArgumentTypeError(f"{text!r} is above 255 (255/255, the whole pixel range); "
                                             f"give {EPS_FORMS}")
        v = v / 255
    eps = float(v)
    if not 0 < eps <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a budget in (0, 1] of the pixel range; give {EPS_FORMS}")
    return eps


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--arch-option takes key=value (e.g. width=16), got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m lib.evaluate", description=__doc__.split("\n\n")[0],
        epilog=f"{EPS_RULE} {EXIT_STATUS} Data names: " + ", ".join(sorted(REAL_DATASETS))
        + ", or an ImageFolder path.")
    positive = whole_number(1)
    p.add_argument("--arch", default=None, help=f"architecture: {', '.join(ARCHS)} or wrn<depth>_<widen> (with "
                   "--weights); or bring your own network with --model or --factory")
    p.add_argument("--weights", default=None, type=Path,
                   help=".safetensors (a store file's checksum is verified), or a .pt/.pth/.th state dict "
                        "(read with torch.load(weights_only=True)); with --arch or --factory")
    p.add_argument("--model", default=None, type=Path,
                   help="your own network: a torch.export program (.pt2, exported in eval mode with a dynamic "
                        "batch) or a TorchScript archive (.pt, .ts); declare its normalisation (--norm none if inside)")
    p.add_argument("--factory", default=None, metavar="PACKAGE.MODULE:FUNCTION",
                   help="your own network built by FUNCTION() (FUNCTION(num_classes=N) with --num-classes, when it "
                        "takes it), holding --weights")
    p.add_argument("--data", default="cifar10", help="dataset name or ImageFolder path; its test split is used")
    p.add_argument("--data-root", type=Path, default=None, help="the dataset's folder (default: data/<name>)")
    p.add_argument("--size", type=positive, default=None, help="image size in px (default: the dataset's native size)")
    p.add_argument("--eps", type=parse_eps, nargs="+", default=[8 / 255],
                   help="L-inf budgets (default 8/255): 8/255 as written, 8 = 8/255 (1..255), 0.0314 as it is")
    p.add_argument("--n", type=positive, default=1000,
                   help="test images, every class in proportion (seeded; default 1000); when the test split "
                        "holds fewer, all are evaluated and the output says so")
    p.add_argument("--num-classes", type=positive, default=None, help="head size (default: the data's class count)")
    p.add_argument("--norm", choices=sorted(NORM_PRESETS), default=None,
                   help="normalisation preset, for checkpoints without normalisation inside")
    p.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="per-channel mean")
    p.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="per-channel std (> 0)")
    p.add_argument("--arch-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="extra build() option of the architecture (e.g. width=16 for small_cnn)")
    p.add_argument("--pgd-steps", type=positive, nargs="+", default=[10, 20, 40],
                   help="PGD step counts of the ladder, at least two different (default 10 20 40)")
    p.add_argument("--apgd-steps", type=positive, default=100, help="APGD-CE / APGD-T iterations (default 100)")
    p.add_argument("--no-apgd", action="store_true",
                   help="skip APGD-CE, APGD-T and the AutoAttack-style chain (needed for models with fewer than "
                        "4 classes: APGD-T's targeted DLR loss is undefined there); the worst case is then over "
                        "FGSM and PGD, and the Square sanity check, with nothing to compare, fails")
    p.add_argument("--square-queries", type=whole_number(0), default=None,
                   help="Square attack queries per image (0: no Square; default: the report's own)")
    p.add_argument("--seed", type=whole_number(0), default=0, help="seed of the image subset and of the attacks")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: cuda when available)")
    p.add_argument("--batch-size", type=positive, default=256)
    p.add_argument("--name", default=None, help="the model's label in the tables (default: the weights file name)")
    p.add_argument("--out", type=Path, default=None,
                   help="a new (or empty) folder for the CSV and Markdown files (default: a new "
                        "runs/evaluate/<name>-<UTC time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="let --out be a folder that already holds files (an earlier report's are replaced)")
    p.add_argument("--fail-on-checks", action="store_true", help="exit with status 3 if a sanity check failed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def one_line(e: BaseException) -> str:
    """``e``'s message as one line: a dataset error's first line (a complete error by design,
    :class:`lib.data.DatasetNotFoundError`), any other message's lines joined with '; '."""
    text = str(e).strip() or type(e).__name__
    if isinstance(e, DatasetNotFoundError):  # its layout and download hint follow in the library's message
        return f"{text.splitlines()[0]} Check --data and --data-root (the dataset's folder)."
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def default_out(label: str, root: Path = Path("runs/evaluate")) -> Path:
    """A folder of ``root`` no report uses yet: ``<label>-<UTC time>`` (``-2``, ``-3``... when two
    reports start within the same second); ``label`` reduced to a plain file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "model"
    stem = root / f"{safe}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    out, k = stem, 1
    while out.exists():
        k += 1
        out = stem.with_name(f"{stem.name}-{k}")
    return out


def _print_result(result: dict, args) -> int:
    info, checks = result["info"], result["checks"]
    print(f"{info['arch']} from {info['weights']} ({info['layout']} layout; normalisation {info['normalisation']}: "
          f"mean {info['mean']}, std {info['std']}) on {info['n']} test images of {info['data']}, {info['device']}")
    for note in info.get("notes", []):
        print(f"note: {note}")
    print()
    print(compact_markdown(result["compact"]))
    print("Sanity checks (Carlini et al. 2019):")
    for r in checks.itertuples():
        print(f"  [{'pass' if r.passed else 'FAIL'}] {r.check}: {r.detail}")
    failed = int((~checks["passed"].astype(bool)).sum())
    if failed:
        print(f"\n{failed} of {len(checks)} sanity checks failed: the evaluation (not the model) is suspect.")
    print("\nwritten: " + ", ".join(str(f) for f in result["files"]))
    return 3 if failed and args.fail_on_checks else 0


def _check_model_options(args) -> None:
    """Exactly one way to the network: --arch with --weights, --model, or --factory with --weights."""
    given = [f"--{k}" for k in ("arch", "model", "factory") if getattr(args, k) is not None]
    if len(given) != 1:
        raise ValueError(("no network given" if not given else f"{' and '.join(given)} both name the network")
                         + ": give --arch NAME --weights FILE, --model FILE (.pt2 or TorchScript), or --factory "
                           "package.module:function --weights FILE")
    if args.model is None and args.weights is None:
        raise ValueError(f"{given[0]} needs --weights (a .safetensors or .pt state dict)")
    if args.model is not None and args.arch_option:
        raise ValueError("--arch-option goes with --arch; --model holds its own architecture")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    made: list[Path] = []
    try:
        _check_model_options(args)
        device = resolve_device(args.device)  # before anything is loaded
        label = args.name or Path(args.model or args.weights).stem
        out = args.out if args.out is not None else default_out(label)
        made = prepare_out(out, overwrite=args.overwrite or args.out is None)
        result = evaluate_checkpoint(
            args.arch, args.weights, args.data, args.eps, data_root=args.data_root, n=args.n,
            num_classes=args.num_classes, mean=args.mean, std=args.std, norm=args.norm,
            arch_kw=dict(args.arch_option), size=args.size, pgd_steps=args.pgd_steps, apgd_steps=args.apgd_steps,
            square_queries=args.square_queries, seed=args.seed, device=device, batch_size=args.batch_size,
            out=out, name=args.name, progress=not args.quiet, apgd=not args.no_apgd, model_file=args.model,
            factory=args.factory)
    except BAD_INPUT as e:
        for folder in reversed(made):  # folders made for this report, left empty by the failure
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return _print_result(result, args)


if __name__ == "__main__":
    sys.exit(main())
