"""``python -m lib.evaluate``: the robustness report of your own checkpoint.

Example (the shared ResNet-20, trained on ImageNet-normalised CIFAR-10, on the shared JPEG subset)::

    python -m lib.evaluate --arch resnet20 --weights ../shared/weights/resnet20-cifar10/resnet20-12fca82f.th \\
        --data cifar10 --data-root ../shared/data/cifar10-jpg-subset --norm imagenet --eps 8/255 \\
        --n 200 --apgd-steps 25 --out runs/byo-resnet20

Prints the compact table (clean, FGSM, PGD, APGD-CE, APGD-T, worst case per eps, with n and
intervals) and the sanity checks, and writes them with the long report into ``--out``. Exit
status: 0 done, 2 bad input (the message says what and how to fix it), 3 with
``--fail-on-checks`` when a sanity check failed.
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from ..data import DatasetNotFoundError
from ..data.real import REAL_DATASETS
from ..models import ARCHS
from .checkpoint import NORM_PRESETS, CheckpointError
from .checkpoint_report import compact_markdown, evaluate_checkpoint


def parse_eps(text: str) -> float:
    """``8/255``, ``0.03137`` or ``8`` (read as /255 when > 1) as a float budget."""
    try:
        v = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"eps must look like 8/255 or 0.0314, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"eps must be positive, got {text!r}")
    return v / 255 if v > 1 else v


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
    p = argparse.ArgumentParser(
        prog="python -m lib.evaluate", description=__doc__.split("\n\n")[0],
        epilog="Data names: " + ", ".join(sorted(REAL_DATASETS)) + ", or an ImageFolder path.")
    p.add_argument("--arch", required=True, help=f"architecture: {', '.join(ARCHS)} or wrn<depth>_<widen>")
    p.add_argument("--weights", required=True, type=Path,
                   help=".safetensors, or a .pt/.pth/.th state dict (read with torch.load(weights_only=True))")
    p.add_argument("--data", default="cifar10", help="dataset name or ImageFolder path; its test split is used")
    p.add_argument("--data-root", type=Path, default=None, help="the dataset's folder (default: data/<name>)")
    p.add_argument("--size", type=int, default=None, help="image size in px (default: the dataset's native size)")
    p.add_argument("--eps", type=parse_eps, nargs="+", default=[8 / 255],
                   help="L-inf budgets, e.g. 8/255 2/255 (default 8/255)")
    p.add_argument("--n", type=int, default=1000, help="test images, every class in proportion (seeded; default 1000)")
    p.add_argument("--num-classes", type=int, default=None, help="head size (default: the data's class count)")
    p.add_argument("--norm", choices=sorted(NORM_PRESETS), default=None,
                   help="normalisation preset, for checkpoints without normalisation inside")
    p.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="per-channel mean")
    p.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="per-channel std")
    p.add_argument("--arch-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="extra build() option of the architecture (e.g. width=16 for small_cnn)")
    p.add_argument("--pgd-steps", type=int, nargs="+", default=[10, 20, 40],
                   help="PGD step counts of the ladder (default 10 20 40)")
    p.add_argument("--apgd-steps", type=int, default=100, help="APGD-CE / APGD-T iterations (default 100)")
    p.add_argument("--square-queries", type=int, default=None, help="Square attack queries (when the report has it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset and of the attacks")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--name", default=None, help="the model's label in the tables (default: the weights file name)")
    p.add_argument("--out", type=Path, default=Path("runs/evaluate"),
                   help="folder for the CSV and Markdown files (default runs/evaluate)")
    p.add_argument("--fail-on-checks", action="store_true", help="exit with status 3 if a sanity check fails")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = evaluate_checkpoint(
            args.arch, args.weights, args.data, args.eps, data_root=args.data_root, n=args.n,
            num_classes=args.num_classes, mean=args.mean, std=args.std, norm=args.norm,
            arch_kw=dict(args.arch_option), size=args.size, pgd_steps=args.pgd_steps, apgd_steps=args.apgd_steps,
            square_queries=args.square_queries, seed=args.seed, device=args.device, batch_size=args.batch_size,
            out=args.out, name=args.name, progress=not args.quiet)
    except (CheckpointError, DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info, checks = result["info"], result["checks"]
    print(f"{info['arch']} from {info['weights']} ({info['layout']} layout; normalisation {info['normalisation']}: "
          f"mean {info['mean']}, std {info['std']}) on {info['n']} test images of {info['data']}, {info['device']}\n")
    print(compact_markdown(result["compact"]))
    print("Sanity checks (Carlini et al. 2019):")
    for r in checks.itertuples():
        print(f"  [{'pass' if r.passed else 'FAIL'}] {r.check}: {r.detail}")
    failed = int((~checks["passed"].astype(bool)).sum())
    if failed:
        print(f"\n{failed} of {len(checks)} sanity checks failed: the evaluation (not the model) is suspect.")
    print("\nwritten: " + ", ".join(str(f) for f in result["files"]))
    return 3 if failed and args.fail_on_checks else 0


if __name__ == "__main__":
    sys.exit(main())
