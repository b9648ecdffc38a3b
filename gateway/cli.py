"""``riskwatch gateway``."""

from __future__ import annotations

import asyncio

import click

from gateway.service import run_gateway
from riskwatch.clictx import settings_of
from riskwatch.settings import Settings


@click.command()
@click.option("--client-id", help="MQTT client id (one per gateway instance).")
@click.pass_context
def gateway(ctx: click.Context, client_id: str | None) -> None:
    """Run the MQTT -> Kafka gateway until SIGTERM or Ctrl-C."""
    settings: Settings = settings_of(ctx)
    if client_id:
        settings = settings.model_copy(
            update={
                "gateway": settings.gateway.model_copy(update={"client_id": client_id})
            }
        )
    asyncio.run(run_gateway(settings))
