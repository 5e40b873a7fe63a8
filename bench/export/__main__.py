import sys

from bench.export.cli import main

sys.exit(main())
