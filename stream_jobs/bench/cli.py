"""``riskwatch bench``: the measuring instruments.

* ``riskwatch bench nab``: the NAB benchmark of the stream detector and of
  library baselines, in NAB's result layout, scored by riskwatch's
  NAB-compatible scorer.
* ``riskwatch bench scenarios``: the fleet simulator's labelled anomalies
  through the worker's scoring path, matched to the ground truth.
* ``riskwatch bench detectors``: scoring throughput and state size for a
  fleet of many devices.
* ``riskwatch bench replay``: the offline replay of a CSV series through the
  worker's own scoring path (``riskwatch replay`` is the online replay to
  MQTT; this is its offline counterpart).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from alert_rules import RuleEngine, load_rules
from riskwatch.clictx import settings_of
from riskwatch.contracts import Metric
from riskwatch.registry import load_registry
from riskwatch.registry_cli import sample_registry_path
from simulators.fleet import select_enterprises
from stream_jobs.bench.candidates import CANDIDATES, DEFAULT_CANDIDATES
from stream_jobs.bench.harness import default_jobs, format_table, run_benchmark
from stream_jobs.bench.replay import format_warning, replay_series, write_rows
from stream_jobs.bench.scenarios import ScenarioConfig, format_report, run_scenarios
from stream_jobs.bench.series import read_series
from stream_jobs.bench.throughput import format_throughput, measure_throughput

_CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}


@click.group(context_settings=_CONTEXT)
def bench() -> None:
    """Measure detection: the NAB benchmark and offline replays."""


@bench.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="NAB-layout corpus: <category>/<name>.csv and combined_windows.json.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Results folder: <detector>/<category>/<detector>_<name>.csv.",
)
@click.option(
    "--detector",
    "detectors",
    multiple=True,
    type=click.Choice(sorted(CANDIDATES)),
    default=DEFAULT_CANDIDATES,
    help="Detector to run; repeat for several.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (files run in parallel); default: one per core.",
)
def nab(
    data_dir: Path, out_dir: Path, detectors: tuple[str, ...], jobs: int | None
) -> None:
    """Run detectors over a NAB-layout corpus, write NAB's result files and
    print their NAB scores (standard, reward_low_FP, reward_low_FN).

    The detectors never see the labels. One threshold per detector and
    profile is optimised over the whole corpus; scores are normalised so that
    the null detector scores 0 and a perfect one 100. Progress goes to
    stderr, the table to stdout.
    """
    started = time.monotonic()
    jobs = jobs or default_jobs()
    scores = run_benchmark(
        data_dir,
        out_dir,
        list(dict.fromkeys(detectors)),
        jobs=jobs,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(format_table(scores))
    click.echo(f"wall_s={time.monotonic() - started:.1f} jobs={jobs} results={out_dir}")


# Shared with ``riskwatch replay --offline``, which runs the command below.
rules_dir_option = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Rule folder; default: the rules shipped with riskwatch.",
)
scores_out_option = click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-reading scores here instead of stdout.",
)


@bench.command()
@click.argument(
    "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--column",
    default=None,
    help="Value column; default: 'value', or the only column besides timestamp.",
)
@click.option(
    "--metric",
    type=click.Choice([m.value for m in Metric]),
    default=Metric.TEMPERATURE_C.value,
    help="What the values measure (counters are scored as rates).",
)
@rules_dir_option
@click.option(
    "--device",
    default="replay",
    help="Device id written on the warnings.",
)
@scores_out_option
@click.pass_context
def replay(
    ctx: click.Context,
    csv_file: Path,
    column: str | None,
    metric: str,
    rules_dir: Path | None,
    device: str,
    out_file: Path | None,
) -> None:
    """Score a CSV series (timestamp,value) offline with the worker's code.

    Each row goes through the same function the Faust scoring agent runs for
    a reading (stream_jobs.processing.process_reading: detectors, then
    rules). Writes timestamp,value,score,learning,detectors per reading
    (detectors that fired, joined by ';'), then a summary and the warnings the
    rules raise: on stderr when the scores go to stdout, so that stdout stays
    a CSV file. Timestamps without an offset are UTC.
    """
    series = read_series(csv_file, column)
    engine = RuleEngine(
        load_rules(rules_dir), authority=settings_of(ctx).worker.authority
    )
    result = replay_series(series, Metric(metric), engine, device=device)
    if out_file is None:
        write_rows(result.rows, click.get_text_stream("stdout"))
    else:
        with out_file.open("w", newline="", encoding="utf-8") as handle:
            write_rows(result.rows, handle)
    flagged = sum(1 for row in result.rows if row.detectors)
    click.echo(
        f"readings={len(result.rows)} flagged={flagged} "
        f"warnings={len(result.warnings)}",
        err=out_file is None,
    )
    for record in result.warnings:
        click.echo(format_warning(record), err=out_file is None)


@bench.command()
@click.option(
    "--enterprises",
    type=click.IntRange(min=1),
    default=60,
    help="Enterprises of the sample registry (about 4 devices each).",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    help="Scored days, after the learning period (7: a whole week).",
)
@click.option(
    "--warmup-days",
    type=click.FloatRange(min=0),
    default=7.0,
    help="The learning period: days replayed before the score starts (the "
    "fleet starts on a Monday; 7 lets the detectors see a weekend first).",
)
@click.option(
    "--step",
    "step_s",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    help="Seconds between readings.",
)
@click.option("--seed", type=int, default=0, help="Fleet seed.")
@click.option(
    "--anomaly-rate",
    type=click.FloatRange(0, 1),
    default=1.0,
    help="Probability per device of one anomaly in the whole window.",
)
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(min=0),
    default=3600.0,
    help="Seconds after an event's end that a warning still detects it.",
)
@click.pass_context
def scenarios(
    ctx: click.Context,
    enterprises: int,
    days: float,
    warmup_days: float,
    step_s: float,
    seed: int,
    anomaly_rate: float,
    grace_s: float,
) -> None:
    """Replay a labelled simulated fleet through the worker's scoring path
    and match the warnings to the ground truth.

    Prints event recall, precision and median detection delay per anomaly
    kind, and false warnings per 100 device-days, for the labelled fleet and
    for the same fleet without anomalies. Progress goes to stderr.
    """
    settings = settings_of(ctx)
    registry = load_registry(sample_registry_path())
    config = ScenarioConfig(
        enterprises=select_enterprises(registry, enterprises),
        days=days,
        warmup_days=warmup_days,
        step_s=step_s,
        seed=seed,
        anomaly_rate=anomaly_rate,
        grace_s=grace_s,
    )
    report = run_scenarios(
        config,
        lambda: RuleEngine(load_rules(None), authority=settings.worker.authority),
        silent_after_s=settings.worker.silent_after_s,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(format_report(report))


@bench.command()
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=10_000,
    help="Devices in the fleet (one series each).",
)
@click.option(
    "--readings-per-device",
    type=click.IntRange(min=1),
    default=20,
    help="Timed readings per device.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=2016,
    help=(
        "Untimed readings the template series learn before the timing "
        "(2016: a week of 5-minute readings)."
    ),
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1_000,
    help="Readings per call of the batch path (each of a different device).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=3,
    help="Runs of each path; the fastest is printed.",
)
def detectors(
    devices: int, readings_per_device: int, warmup: int, batch: int, repeat: int
) -> None:
    """Measure scoring throughput (readings/s, one core) of the stream
    detector for a fleet of many devices, and the state size per device.

    Two paths: stream_jobs.detectors.score_value once per reading, and
    score_batch over --batch readings of different devices at once (numpy);
    each with state kept in memory and again with the round trip of the
    device-state table's codec (stream_jobs.state_codec). Prints the mean and
    largest serialised state per device. A benchmark: nothing fails when the
    target is not met.
    """
    started = time.monotonic()
    results = measure_throughput(
        devices,
        readings_per_device,
        warmup=warmup,
        batch=batch,
        repeat=repeat,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(format_throughput(results, target=100_000))
    click.echo(f"wall_s={time.monotonic() - started:.1f}")
