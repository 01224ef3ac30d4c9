"""Monitoring shells: drift and performance reports, delayed labels, alert and dashboard config."""
