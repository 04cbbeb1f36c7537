"""`python -m linguamix.cli ...`: the `linguamix` command (the study plans' judge lines use it)."""

import sys

from linguamix.cli import main

sys.exit(main())
