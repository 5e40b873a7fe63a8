"""``python -m bench.registry``: see bench/README.md ("bench.registry")."""

from bench.registry.cli import main

raise SystemExit(main())
