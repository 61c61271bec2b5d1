"""The `singax` console command (placeholder)."""
import sys


def main(argv=None) -> int:
    print("usage: singax run SCRIPT.py [ARGS...]", file=sys.stderr)
    return 2
