import sys

from bench.projector.cli import main

sys.exit(main())
