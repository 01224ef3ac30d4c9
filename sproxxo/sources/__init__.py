"""Data sources of the domain: the synthetic generator and local files (canonical layout)."""
