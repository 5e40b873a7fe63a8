"""Server CPU of opening a visitor, of resuming one, and of idle sockets (issue 17, item 1).

``python -m bench.sockets`` (about 2 minutes) starts ``leadflow serve`` and the bare
aiohttp echo server (:mod:`bench.embedded.echo`) as subprocesses and measures, in the
same run, the CPU time each server process spends (user + system of all its threads,
from ``/proc/<pid>/stat``, the SQLite writer included) per:

* **open**: a visitor connects (the WebSocket upgrade), sends its first frame, reads
  the answer and closes. For Leadflow the frame is ``start`` and the answer the
  ``session`` frame and the messages up to the first question (a new conversation,
  its events written); for the echo one 256-byte frame echoed: the transport alone.
* **resume**: a visitor of a conversation started before reconnects with its token
  and the last seq it has (as after a gateway restart), reads the ``session`` frame
  and closes.
* **idle**: ``--idle`` sockets (10,000) held open with the servers' 20 s WebSocket
  heartbeat and nothing else, over ``--idle-seconds``: CPU per second per 10k sockets.

Visitors run ``--concurrency`` at a time from this process; repeats alternate the
servers; per-visitor CPU is the median over the repeats. The load generator shares
the two cores: report the load average with the numbers (the JSON has it).
Writes ``bench/results/sockets.json`` and ``sockets.md``.
"""
