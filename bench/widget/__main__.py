import sys

from bench.widget.cli import main

sys.exit(main())
