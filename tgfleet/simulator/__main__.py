import sys

from tgfleet.simulator.cli import run_cli

sys.exit(run_cli(sys.argv[1:]))
