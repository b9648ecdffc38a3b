"""``riskwatch worker``."""

from __future__ import annotations

import gc
import logging

import click
import faust

from riskwatch.clictx import settings_of
from stream_jobs.app import StreamWorker


@click.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Faust stream-processing worker until SIGTERM or Ctrl-C.

    Start more workers (same settings) to share the readings partitions.
    """
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    stream_worker = StreamWorker(settings_of(ctx))
    # What is loaded by now (faust, aiokafka, pydantic's schemas, the rules:
    # some 100,000 objects) lives as long as the process: moved out of the
    # cyclic collector's reach, its full collections no longer walk them on
    # every few batches (half the scoring throughput in `riskwatch bench
    # detectors`). Reference counting still frees them.
    gc.collect()
    gc.freeze()
    faust.Worker(stream_worker.app, loglevel=level).execute_from_commandline()
