"""``python -m helpers run|validate|simulate``: the command line (:mod:`helpers.runner.cli`)."""

import sys

from helpers.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
