"""strategies (see README)."""
