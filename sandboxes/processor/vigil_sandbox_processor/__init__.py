"""A sandbox payment processor that answers like a real one, run as its own process."""
