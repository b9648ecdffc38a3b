"""Streaming detectors behind :mod:`stream_jobs.detectors`."""
