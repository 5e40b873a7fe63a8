"""The flow registry: published flow versions and active versions, in the log."""
