"""``python -m bench.report``: the funnel report's time and memory on 100,000
conversations of one flow, read from an embedded SQLite log."""
