"""The worker agent that claims and runs jobs."""
