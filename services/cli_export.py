"""``leadflow export``: export events to Parquet or JSONL (issue 6; being built)."""

from __future__ import annotations

import argparse
import sys


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("export", help="export events to Parquet or JSONL")


def main(args: argparse.Namespace) -> int:
    print("leadflow export: not built yet", file=sys.stderr)
    return 2
