"""python -m bot.cli: the same as the `clip-audit` command."""

import sys

from bot.cli import main

sys.exit(main())
