"""``riskwatch worker``."""

from __future__ import annotations

import asyncio
import gc
import logging

import click
import faust
from aiokafka.errors import KafkaError

from riskwatch.clictx import settings_of
from riskwatch.services.kafka import TopicError, ensure_topics_at
from stream_jobs.app import StreamWorker

log = logging.getLogger(__name__)


@click.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Faust stream-processing worker until SIGTERM or Ctrl-C.

    Start more workers (same settings) to share the readings partitions.
    """
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    stream_worker = StreamWorker(settings_of(ctx))
    _create_internal_topics(stream_worker)
    # What is loaded by now (faust, aiokafka, pydantic's schemas, the rules:
    # some 100,000 objects) lives as long as the process: moved out of the
    # cyclic collector's reach, its full collections no longer walk them on
    # every few batches (half the scoring throughput in `riskwatch bench
    # detectors`). Reference counting still frees them.
    gc.collect()
    gc.freeze()
    faust.Worker(stream_worker.app, loglevel=level).execute_from_commandline()


def _create_internal_topics(stream_worker: StreamWorker) -> None:
    """Create the agents' internal topics before Faust starts.

    Faust creates them itself just before its consumer subscribes, and the
    broker's metadata may not list them yet when it does: the consumer then
    logs ``Ignoring missing topic`` and reads nothing from that topic until
    its next metadata refresh, minutes later (seen for the silence and group
    topics of a first start). Failing here is not fatal: Faust still tries.
    """
    bootstrap = stream_worker.settings.kafka.bootstrap
    try:
        created, _ = asyncio.run(
            ensure_topics_at(bootstrap, stream_worker.internal_topics())
        )
    except (TopicError, KafkaError, TimeoutError, OSError) as exc:
        log.warning("internal topics not created bootstrap=%s: %r", bootstrap, exc)
        return
    if created:
        log.info("internal topics created topics=%s", ",".join(created))
