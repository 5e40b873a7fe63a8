"""The 100k proof (issue 17, item 5): ``python -m bench.scale`` holds 100,000 visitor
sockets on several gateways of the distributed mode (a Kafka broker, processors and
Redis on the same machine), each with a started conversation, while 1,000 of them
play flows at human pace; then kills one gateway with SIGKILL and times how long its
visitors take to resume on the others, checking that nothing was lost.

Modules: ``plan`` (pure: where each socket lives, the widget's backoff,
percentiles), ``results`` (pure: the load generators' answers folded into the
numbers), ``stack`` (broker, Redis, processors, gateways), ``loadgen`` (one
load-generator process) with ``visitor`` (one socket's protocol), ``fleet`` (the
coordinator's side of the load generators: their configs and commands), ``run`` (the
run's phases, driven), ``summary`` (the raw measurements as the report's summary),
``measure`` (/proc and /metrics), ``report`` (markdown), ``__main__`` (the command
line: plan, start, drive, write). Documented in bench/README.md.
"""
