"""Faust stream jobs: storage, statistics, detection and warnings."""
