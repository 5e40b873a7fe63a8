"""``python -m bench.delivery``: see ``bench/delivery/README.md``."""

import sys

from bench.delivery.cli import main

if __name__ == "__main__":
    sys.exit(main())
