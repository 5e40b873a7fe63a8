"""``python -m bench.embedded``: see ``bench/README.md``."""

import sys

from bench.embedded.cli import main

if __name__ == "__main__":
    sys.exit(main())
