"""analysis (see README)."""
