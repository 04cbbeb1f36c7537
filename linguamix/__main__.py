"""`python -m linguamix ...`: the `linguamix` command, for environments without its script."""

import sys

from linguamix.cli import main

sys.exit(main())
