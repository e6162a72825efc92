import sys

from tgfleet.platform.cli import main

sys.exit(main())
