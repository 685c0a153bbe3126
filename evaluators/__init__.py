"""evaluators (see README)."""
