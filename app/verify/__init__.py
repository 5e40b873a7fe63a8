"""``leadflow replay --verify``: re-run the decider over the logged commands and
check that it reproduces the logged events bit for bit (docs/analytics.md).

* :mod:`app.verify.model`: what goes in (a conversation's transcript) and
  what comes out (results, divergences, the summary);
* :mod:`app.verify.core`: the pure check of one conversation;
* :mod:`app.verify.policies`: the snapshot a logged decision names, compiled;
* :mod:`app.verify.runner`: the shell over a source of transcripts;
* :mod:`app.verify.sqlite_source`, :mod:`app.verify.kafka_source`: the
  embedded log (events, command journal, snapshot table) and the Kafka topics.
"""
