"""What the workbook's three command lines (``lib.workbook``, ``lib.evaluate``, ``lib.store``)
share about bad input: an argparse parser whose errors are one line on stderr with exit status 2
(argparse prints its usage block first), and the argparse type of a whole-number option."""
from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``<prog>: error: <message> (<hint>)``, exit 2."""

    def __init__(self, *args, hint: str = "see --help", **kwargs):
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} ({self.hint})\n")


def whole_number(minimum: int):
    """An argparse type: a whole number >= ``minimum`` (``3``, not ``3.0`` or ``-5``)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return value
    parse.__name__ = f"whole number >= {minimum}"
    return parse
