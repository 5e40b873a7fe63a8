"""Edge selection at decision points: the policy port and its implementations."""
