"""Read models materialised from the event log."""
