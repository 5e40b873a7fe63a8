"""``python -m bench.registry``: publish a flow version through the admin API and time
the first conversation greeted by it on each gateway and each processor (issue 18's
benchmark: p99 over 50 publishes <= 1 s), against one start's round trip."""
