"""Measuring instruments: a NAB-compatible scorer, the NAB benchmark harness
with library baselines, and an offline replay through the worker's code.

Public surface: :mod:`stream_jobs.bench.nab_score` (pure scoring),
:mod:`stream_jobs.bench.harness` (running detectors over a corpus) and
:mod:`stream_jobs.bench.replay` (offline replay); ``riskwatch bench`` on the
command line (:mod:`stream_jobs.bench.cli`).
"""
