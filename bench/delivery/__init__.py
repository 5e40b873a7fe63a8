"""``python -m bench.delivery``: lead delivery's latency, throughput and outage drain
(bench/delivery/README.md)."""
