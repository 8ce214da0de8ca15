"""``python -m helpers.reporting.supplement --config study.yaml``."""

import sys

from helpers.reporting.supplement import main

sys.exit(main())
