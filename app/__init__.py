"""The top room: entry points (the ``leadflow`` CLI) and one composition root per service."""
