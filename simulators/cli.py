"""``riskwatch simulate``, ``riskwatch replay`` and ``riskwatch receiver``.

Registered on the main ``riskwatch`` group by :mod:`riskwatch.cli`; expected
failures raise :class:`RiskwatchError` subclasses, which that group prints as
``ErrorName: message``.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib.resources import files
from pathlib import Path

import click
from click.core import ParameterSource

from riskwatch.contracts import Metric
from riskwatch.errors import ConfigError
from riskwatch.registry import load_registry
from riskwatch.settings import Settings, load_settings
from riskwatch.signing import signing_secret
from simulators.fleet import generate_fleet, select_enterprises, window_ending_now
from simulators.publisher import Progress, run_fleet
from simulators.receiver import DEFAULT_HOST, DEFAULT_PORT, WarningReceiver
from simulators.replay import read_series, run_replay
from simulators.truth import write_truth
from stream_jobs.bench.cli import replay as score_offline
from stream_jobs.bench.cli import rules_dir_option, scores_out_option

_CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}


def sample_registry_path() -> Path:
    """The sample registry shipped with the package."""
    return Path(str(files("riskwatch").joinpath("data/sample_registry.yaml")))


def _settings(ctx: click.Context) -> Settings:
    # The same cache as the main group's: one settings object per process.
    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("config"))
    settings: Settings = obj["settings"]
    return settings


def _progress(progress: Progress) -> None:
    click.echo(progress.line())


def _exclusions(values: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for value in values:
        enterprise, _, device = value.partition("/")
        if not enterprise or not device:
            raise ConfigError(f"--exclude {value!r}: expected ENTERPRISE/DEVICE")
        pairs.add((enterprise, device))
    return frozenset(pairs)


@click.command(context_settings=_CONTEXT)
@click.option(
    "--registry",
    "registry_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Registry YAML file [default: the shipped sample registry].",
)
@click.option(
    "--enterprises",
    type=click.IntRange(min=1),
    default=5,
    help="How many enterprises, taken in turn from each industry.",
)
@click.option(
    "--only",
    multiple=True,
    help="Simulate these enterprise ids instead (repeatable).",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    help="Length of the window, which ends now.",
)
@click.option(
    "--step",
    type=click.FloatRange(min=1),
    default=60.0,
    help="Seconds between a device's readings.",
)
@click.option(
    "--speedup",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Device time runs X times faster than wall time; 0 = as fast as the "
    "broker acknowledges.",
)
@click.option("--seed", type=int, default=0, help="Same seed, same fleet.")
@click.option(
    "--anomaly-rate",
    type=click.FloatRange(0, 1),
    default=0.3,
    help="Probability per device of one injected anomaly.",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("ground_truth.jsonl"),
    help="Ground-truth JSONL file written before publishing.",
)
@click.option(
    "--exclude",
    multiple=True,
    help="ENTERPRISE/DEVICE to leave out, e.g. HC001/TT-101 (repeatable).",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    *,
    registry_file: Path | None,
    enterprises: int,
    only: tuple[str, ...],
    days: float,
    step: float,
    speedup: float,
    seed: int,
    anomaly_rate: float,
    truth: Path,
    exclude: tuple[str, ...],
) -> None:
    """Publish a fleet's meter and sensor readings with labelled anomalies.

    Every device of each chosen enterprise reports over the window
    [now - DAYS, now], in device-time order, to MQTT with the simulator
    account; the injected anomalies (and counter resets and rollovers, which
    are not anomalies) are written to the ground-truth file.
    """
    registry = load_registry(registry_file or sample_registry_path())
    if only:
        by_id = registry.by_id()
        unknown = [e for e in only if e not in by_id]
        if unknown:
            raise ConfigError(
                f"--only: no enterprise {', '.join(unknown)} in the registry"
            )
        chosen = [by_id[e] for e in only]
    else:
        chosen = select_enterprises(registry, enterprises)
    start, end = window_ending_now(days)
    try:
        fleet = generate_fleet(
            chosen,
            start=start,
            end=end,
            step_s=step,
            seed=seed,
            anomaly_rate=anomaly_rate,
            exclude=_exclusions(exclude),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    events = write_truth(fleet.truth, truth)
    click.echo(
        f"fleet enterprises={len(chosen)} devices={len(fleet.series)} "
        f"messages={fleet.message_count()} truth_events={events} truth={truth}"
    )
    result = run_fleet(fleet, _settings(ctx), speedup=speedup, progress=_progress)
    click.echo(
        f"done published={result.published} elapsed_s={result.elapsed_s:.1f} "
        f"rate={result.rate:.0f}/s"
    )


@click.command(context_settings=_CONTEXT)
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--enterprise", default="HC001", help="Enterprise id to publish as.")
@click.option("--device", default="TT-101", help="Device id to publish as.")
@click.option(
    "--metric",
    type=click.Choice([m.value for m in Metric]),
    default=Metric.TEMPERATURE_C.value,
    help="Metric the values are published as (in its canonical unit).",
)
@click.option("--column", default="value", help="CSV column holding the values.")
@click.option(
    "--speedup",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Device time runs X times faster than wall time; 0 = as fast as the "
    "broker acknowledges.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Replay only the first N rows.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Publish nothing: score the file with the worker's detectors and "
    "rules and print per-reading scores and warnings (riskwatch bench replay).",
)
@rules_dir_option
@scores_out_option
@click.pass_context
def replay(
    ctx: click.Context,
    *,
    csv_file: Path,
    enterprise: str,
    device: str,
    metric: str,
    column: str,
    speedup: float,
    limit: int | None,
    offline: bool,
    rules_dir: Path | None,
    out_file: Path | None,
) -> None:
    """Publish a CSV series (timestamp + value column) as one device's metric.

    Timestamps without an offset are UTC. The whole series is shifted by
    whole seconds so that its last point lands at about now, never later;
    the shift is printed so that labelled windows can be mapped likewise.

    With --offline nothing is published: each row goes through the code the
    Faust scoring agent runs (detectors, then rules) and the per-reading
    scores and the warnings the rules would raise are printed.
    """
    if offline:
        if limit is not None or speedup:
            raise click.UsageError("--limit and --speedup apply only when publishing")
        ctx.invoke(
            score_offline,
            csv_file=csv_file,
            # Unless given, the offline reader picks the value column itself.
            column=None
            if ctx.get_parameter_source("column") is ParameterSource.DEFAULT
            else column,
            metric=metric,
            rules_dir=rules_dir,
            device=device,
            out_file=out_file,
        )
        return
    if rules_dir is not None or out_file is not None:
        raise click.UsageError("--rules and --out apply only with --offline")
    series = read_series(csv_file, column=column, limit=limit)
    result = run_replay(
        series,
        _settings(ctx),
        enterprise=enterprise,
        device=device,
        metric=Metric(metric),
        speedup=speedup,
        progress=_progress,
    )
    click.echo(
        f"done published={result.published} "
        f"shift_s={result.shift.total_seconds():.0f} "
        f"first={result.first_ts.isoformat()} last={result.last_ts.isoformat()}"
    )


@click.command(context_settings=_CONTEXT)
@click.option("--host", default=DEFAULT_HOST, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, help="TCP port."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("warnings.jsonl"),
    help="JSONL file every received warning is appended to.",
)
@click.option(
    "--fail-first",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Answer the first N posts 500, to rehearse the platform being down.",
)
@click.pass_context
def receiver(
    ctx: click.Context, host: str, port: int, out: Path, fail_first: int
) -> None:
    """Run a stand-in supervision platform that receives warnings.

    POST /warnings takes a warning as a signed CloudEvent, as the worker sends
    it (answers 202 with a receipt, 200 again for an event already received,
    401 for a missing or wrong signature, 400 for anything else); GET /warnings
    lists those received, GET /health answers ok with the counters. The
    signing secret is platform.signing_secret, else the one generated in the
    run folder. Stop with Ctrl-C.
    """
    secret = signing_secret(_settings(ctx))
    server = WarningReceiver(
        host, port, secret=secret, out=out, echo=click.echo, fail_first=fail_first
    )

    async def main() -> None:
        url = await server.start()
        click.echo(f"receiving warnings at {url} (Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
