"""``riskwatch registry load FILE``: validate a registry and publish it."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from pathlib import Path

import click
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from riskwatch.clictx import settings_of
from riskwatch.errors import ServiceError
from riskwatch.registry import Registry, load_registry
from riskwatch.topics import ENTERPRISES

log = logging.getLogger(__name__)


def sample_registry_path() -> Path:
    """The sample registry shipped with riskwatch (invented enterprises)."""
    return Path(str(resources.files("riskwatch").joinpath("data/sample_registry.yaml")))


async def publish_registry(registry: Registry, bootstrap: str) -> int:
    """Publish every enterprise, keyed by id, to the compacted registry topic.

    Returns:
        The number of records published (all acknowledged by Kafka).
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
    )
    try:
        await producer.start()
        futures = [
            await producer.send(
                ENTERPRISES, e.model_dump_json().encode(), key=e.id.encode()
            )
            for e in registry.enterprises
        ]
        await asyncio.gather(*futures)
    except KafkaError as exc:
        raise ServiceError("kafka", f"publishing the registry failed: {exc!r}") from exc
    finally:
        await producer.stop()
    log.info("registry published enterprises=%s topic=%s", len(futures), ENTERPRISES)
    return len(futures)


@click.group()
def registry() -> None:
    """The enterprise registry."""


@registry.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Only validate; publish nothing.")
@click.pass_context
def load(ctx: click.Context, file: Path | None, check: bool) -> None:
    """Validate FILE (default: the shipped sample) and publish it to Kafka.

    Each enterprise becomes one record on the compacted registry topic, keyed
    by its id; running workers pick changes up without a restart.
    """
    path = file or sample_registry_path()
    parsed = load_registry(path)
    if check:
        click.echo(f"{path}: {len(parsed.enterprises)} enterprises, valid")
        return
    count = asyncio.run(publish_registry(parsed, settings_of(ctx).kafka.bootstrap))
    click.echo(f"{path}: published {count} enterprises to {ENTERPRISES}")
