"""``riskwatch demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from riskwatch.clictx import settings_of
from riskwatch.demo import DemoError, DemoPlan, run_demo

# The shared NAB subset sits beside the checkout (``../shared/data/nab``);
# RISKWATCH_NAB_DIR points elsewhere, e.g. for a clone in another folder.
DEFAULT_NAB = Path(
    os.environ.get("RISKWATCH_NAB_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nab"
)


@click.command()
@click.option(
    "--nab",
    "nab_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_NAB,
    help="NAB-layout data folder (the replayed series and combined_windows.json).",
)
@click.option(
    "--enterprises",
    default=50,
    type=click.IntRange(1, 60),
    help="Simulated enterprises beside the replayed one.",
)
@click.option(
    "--days",
    default=1.0,
    type=click.FloatRange(0.01, 14),
    help="Days of simulated fleet history, ending now.",
)
@click.option(
    "--step",
    "step_s",
    default=600.0,
    type=click.FloatRange(10, 3600),
    help="Seconds between two readings of a simulated device.",
)
@click.option("--seed", default=7, help="Seed of the fleet simulation.")
@click.pass_context
def demo(
    ctx: click.Context,
    nab_dir: Path,
    enterprises: int,
    days: float,
    step_s: float,
    seed: int,
) -> None:
    """Run the whole pipeline on real input and print warnings and a summary.

    Brings the services up, loads the sample registry, starts a gateway, a
    worker and a warning receiver, replays NAB's machine-temperature series
    as HC001/TT-101 beside a simulated fleet, then checks that the messages
    published in all (readings and malformed ones) = stored +
    dead-lettered. Exit 1 if it does not add up.
    """
    if not (nab_dir / "combined_windows.json").is_file():
        raise DemoError(
            f"{nab_dir} is not a NAB-layout folder (no combined_windows.json)"
        )
    plan = DemoPlan(
        nab_dir=nab_dir,
        enterprises=enterprises,
        fleet_days=days,
        step_s=step_s,
        seed=seed,
    )
    summary = run_demo(settings_of(ctx), plan, click.echo)
    if not summary.balanced:
        sys.exit(1)
