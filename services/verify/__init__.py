"""``leadflow replay --verify``: re-run the decider over the logged commands and
check that it reproduces the logged events bit for bit (docs/analytics.md).

* :mod:`services.verify.model`: what goes in (a conversation's transcript) and
  what comes out (results, divergences, the summary);
* :mod:`services.verify.core`: the pure check of one conversation;
* :mod:`services.verify.policies`: the snapshot a logged decision names, compiled;
* :mod:`services.verify.runner`: the shell over a source of transcripts;
* :mod:`services.verify.sqlite_source`, :mod:`services.verify.kafka_source`: the
  embedded log (events, command journal, snapshot table) and the Kafka topics.
"""
