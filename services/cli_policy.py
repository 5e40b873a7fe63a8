"""``leadflow policy``: evaluate candidate policies offline (issue 6; being built)."""

from __future__ import annotations

import argparse
import sys


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("policy", help="evaluate candidate policies offline")


def main(args: argparse.Namespace) -> int:
    print("leadflow policy: not built yet", file=sys.stderr)
    return 2
