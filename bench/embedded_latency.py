"""Old name of ``python -m bench.embedded``, kept as an alias; see ``bench/README.md``."""

import sys

from bench.embedded.cli import main

if __name__ == "__main__":
    sys.exit(main())
