"""Realistic meter and sensor feeds with labelled anomalies."""
