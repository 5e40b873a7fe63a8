"""``leadflow report``: write analysts' reports (funnel) (issue 6; being built)."""

from __future__ import annotations

import argparse
import sys


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("report", help="write analysts' reports (funnel)")


def main(args: argparse.Namespace) -> int:
    print("leadflow report: not built yet", file=sys.stderr)
    return 2
