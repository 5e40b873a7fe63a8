"""``python -m bench.edge``: launcher click -> first question visible in Chromium, for a
visitor far from the region (150 ms one way, through Toxiproxy) with and without the
instant opening, and for a visitor near it (5 ms); writes ``bench/results/edge.json``."""
