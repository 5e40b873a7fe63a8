import sys

from bench.edge.cli import main

sys.exit(main())
