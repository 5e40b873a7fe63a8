"""End-to-end latency of the embedded server (``leadflow serve``) against an echo baseline.

Starts the real embedded server and a bare aiohttp WebSocket echo server as
subprocesses, then drives both from this process with N concurrent scripted
visitors (asyncio + aiohttp client). Each phase runs against Leadflow, then the
echo server replays exactly what the Leadflow run played (the same sockets,
frames and think times), so every Leadflow number has a floor beside it.

Modules: ``phases`` (what each phase offers), ``servers`` and ``echo`` (the two
subprocesses), ``protocol`` and ``visitors`` (the load generator), ``runner``
(one measured run), ``stats``, ``metrics`` and ``integrity`` (what is measured),
``suite`` (the whole benchmark), ``report`` (the markdown) and ``cli``.

Run ``python -m bench.embedded --help``; see ``bench/README.md``.
"""
