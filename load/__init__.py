"""Load tests and benchmarks (not part of the product; excluded from the Bento)."""
