"""Child-process entry for the tests: the legacy commands on a bare argparse parser.

(The ``tgfleet`` console script mounts the same ``add_parser``/``run`` pair.)
"""

from __future__ import annotations

import argparse
import logging
import sys

from tgfleet.legacy.cli import add_parser, run


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="tgfleet")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
