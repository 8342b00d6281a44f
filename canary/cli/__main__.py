"""``python -m canary.cli``."""

import sys

from canary.cli import main

sys.exit(main())
