"""``riskwatch worker``."""

from __future__ import annotations

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
    faust.Worker(stream_worker.app, loglevel=level).execute_from_commandline()
