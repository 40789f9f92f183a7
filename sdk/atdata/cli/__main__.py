"""`python -m atdata.cli` runs the `atdata` command line."""

import sys

from . import main

sys.exit(main())
