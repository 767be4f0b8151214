"""``python -m openhmr``: the command line, also the torchrun entry point."""

import sys

from openhmr.cli import main

sys.exit(main())
