"""Contracts: the flow graph, commands, events, replies and wire frames."""
