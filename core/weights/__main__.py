"""`python -m core.weights`."""

import sys

from .cli import main

sys.exit(main())
