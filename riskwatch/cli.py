"""The ``riskwatch`` command line.

Expected failures print ``ErrorName: message`` on stderr and exit with 1; a
usage error exits with 2 (click's convention).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import click

from riskwatch.clictx import settings_of
from riskwatch.errors import RiskwatchError
from riskwatch.kafka_log import install_kafka_gate
from riskwatch.services import SERVICE_NAMES, Stack

_CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RiskwatchError as exc:
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
            sys.exit(1)


_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"\\,)]+")


class RedactTokens(logging.Filter):
    """Blanks ``Bearer <token>`` in every log line and traceback.

    Our code never logs a token, but a library may quote a request header:
    aiohttp logs a malformed header line, with its token, at ERROR.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _BEARER.search(message):
            record.msg, record.args = _BEARER.sub(r"\1<redacted>", message), None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = _BEARER.sub(r"\1<redacted>", text)
        return True


@click.group(cls=_Cli, context_settings=_CONTEXT)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RISKWATCH_CONFIG",
    help="TOML settings file; environment variables RISKWATCH_* override it.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    help="Level of the operator log on stderr.",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_level: str) -> None:
    """riskwatch: IoT risk monitoring for enterprise safety supervision."""
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
    install_kafka_gate(getattr(logging, log_level))
    ctx.ensure_object(dict)["config"] = config


@cli.group(context_settings=_CONTEXT)
def services() -> None:
    """Install, start, check and stop Mosquitto, Kafka and InfluxDB."""


_names = click.argument("names", nargs=-1, type=click.Choice(SERVICE_NAMES))


@services.command()
@_names
@click.pass_context
def up(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Install (once) and start the services; running healthy ones are left alone.

    Without NAMES, all of them: mosquitto, kafka, influxdb.
    """
    Stack(settings_of(ctx), report=click.echo).up(names)
    _print_status(Stack(settings_of(ctx)), names)


@services.command()
@_names
@click.pass_context
def install(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Install (once) the services' software without starting anything.

    On a fresh machine this downloads Kafka and builds InfluxDB (minutes);
    afterwards it only checks the caches. `up` does it too when needed.
    """
    Stack(settings_of(ctx), report=click.echo).install(names)


@services.command()
@_names
@click.pass_context
def down(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Stop the services that `up` started (by their pid files)."""
    Stack(settings_of(ctx), report=click.echo).down(names)


@services.command()
@_names
@click.pass_context
def status(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show each service, its address, pid and health; exit 3 if any is not healthy."""
    if not _print_status(Stack(settings_of(ctx)), names):
        sys.exit(3)


def _print_status(stack: Stack, names: tuple[str, ...]) -> bool:
    rows = stack.status(names)
    click.echo(f"{'service':<10} {'address':<22} {'pid':>8}  health")
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        click.echo(f"{row.name:<10} {row.address:<22} {pid:>8}  {row.health}")
    return all(row.health == "healthy" for row in rows)


# Commands of the other packages: one line each, added by their owners.
from riskwatch.registry_cli import registry  # noqa: E402

cli.add_command(registry)
from gateway.cli import gateway  # noqa: E402

cli.add_command(gateway)
from stream_jobs.cli import worker  # noqa: E402

cli.add_command(worker)
from alert_rules.cli import rules  # noqa: E402

cli.add_command(rules)
from simulators.cli import receiver, replay, simulate  # noqa: E402

cli.add_command(simulate)
cli.add_command(replay)
cli.add_command(receiver)
from riskwatch.demo_cli import demo  # noqa: E402

cli.add_command(demo)

from stream_jobs.bench.cli import bench  # noqa: E402

cli.add_command(bench)
from alert_rules.api.cli import api, warnings  # noqa: E402

cli.add_command(api)
cli.add_command(warnings)


def main() -> None:
    cli(prog_name="riskwatch")
