import sys

from bench.kafka.cli import main

sys.exit(main())
