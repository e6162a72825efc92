import sys

from tgfleet.cli import main

sys.exit(main())
