"""Export of the event log for analysts: ``leadflow export`` and :func:`load_events`.

:mod:`projector.export.source` is the shared reader (also used by the funnel
report and the off-policy evaluation).
"""
