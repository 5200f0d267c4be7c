"""python -m hub_emulator: see hub_emulator/cli.py."""

import sys

from .cli import main

sys.exit(main())
