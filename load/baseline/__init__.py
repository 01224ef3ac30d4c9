"""The seed-style FastAPI endpoint kept as a benchmark yardstick."""
