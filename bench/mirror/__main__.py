import sys

from bench.mirror.run import main

sys.exit(main())
