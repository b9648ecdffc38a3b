"""``riskwatch rules``: check rule files before a worker uses them."""

from __future__ import annotations

from pathlib import Path

import click

from alert_rules.errors import RuleError
from alert_rules.loader import DEFAULTS_DIR, check_rules
from riskwatch.clictx import settings_of

_CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}


@click.group(context_settings=_CONTEXT)
def rules() -> None:
    """Graded early-warning rules (levels I-IV): check them."""


@rules.command(context_settings=_CONTEXT)
@click.argument(
    "directory",
    required=False,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.pass_context
def check(ctx: click.Context, directory: Path | None) -> None:
    """Validate every *.yaml/*.yml rule file under DIRECTORY (default: shipped rules).

    Prints a summary of the rules when all are valid; otherwise lists every
    problem with its file, rule and field and exits with 1. Rules are checked
    against the settings the worker would run with (a `silent` duration
    longer than worker.silent_after_s never holds).
    """
    silent_after_s = settings_of(ctx).worker.silent_after_s
    result = check_rules(directory, silent_after_s=silent_after_s)
    if result.problems:
        raise RuleError(result.problems)
    where = directory if directory is not None else DEFAULTS_DIR
    click.echo(
        f"{len(result.rules)} rule(s) in {len(result.files)} file(s) under {where}"
    )
    for rule in result.rules:
        click.echo(f"  {rule.summary()}")
