"""``riskwatch api`` (the server) and ``riskwatch warnings`` (its client).

Exit codes of ``warnings``: 0 done; 1 an expected failure, printed as
``ErrorName: message`` (Unauthorized, Forbidden, NotFound, Conflict,
InvalidInput, Unavailable); 2 a usage error; 4 an action accepted but not
applied by the worker within the API's wait (``api.apply_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from alert_rules.api.auth import token_secret_name
from alert_rules.api.client import ApiClient
from alert_rules.api.errors import Unauthorized
from alert_rules.lifecycle import Action
from alert_rules.rule import Level, ScopeKind
from alert_rules.warning import WarningStatus
from riskwatch.clictx import settings_of
from riskwatch.errors import RiskwatchError
from riskwatch.secrets import SecretStore
from riskwatch.signing import signing_secret
from stream_jobs.delivery import resend_fallback

_CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"]}
EXIT_PENDING = 4
_T = TypeVar("_T")


class StillUndelivered(RiskwatchError):
    """Events of the fallback file failed again; they are back in it."""


@click.command(context_settings=_CONTEXT)
@click.pass_context
def api(ctx: click.Context) -> None:
    """Run the officer HTTP API until SIGTERM or Ctrl-C.

    Listens on api.host:api.port; reads warnings from the warning store
    topic, sends officers' actions to the commands topic (the worker applies
    them). Tokens left unset are generated into <run_dir>/secrets/api-token-*.
    """
    from alert_rules.api.server import serve  # noqa: PLC0415 - only this command needs it

    asyncio.run(serve(settings_of(ctx)))


@click.group(context_settings=_CONTEXT)
@click.option(
    "--url", default=None, help="API base URL  [default: http://<api.host>:<api.port>]"
)
@click.option(
    "--token",
    envvar="RISKWATCH_API_TOKEN",
    default=None,
    help="Bearer token; else the generated token of --user from the run folder.",
)
@click.option("--user", default="officer", help="Whose generated token to use.")
@click.pass_context
def warnings(ctx: click.Context, url: str | None, token: str | None, user: str) -> None:
    """List, inspect and handle warnings through the officer API."""
    ctx.obj["api"] = (url, token, user)


def _client(ctx: click.Context) -> ApiClient:
    # Resolved here, not in the group, so that `--help` of a subcommand works
    # without settings or tokens.
    url, token, user = ctx.obj["api"]
    settings = settings_of(ctx)
    if token is None:
        token = SecretStore(settings.run_dir / "secrets").get(token_secret_name(user))
        if token is None:
            raise Unauthorized(
                f"no --token given and no generated token for user {user!r} "
                f"in {settings.run_dir / 'secrets'}"
            )
    return ApiClient(url or settings.api.url, token)


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def _choice(
    values: type[Level] | type[WarningStatus] | type[ScopeKind],
) -> click.Choice[str]:
    return click.Choice([v.value for v in values])


@warnings.command("list")
@click.option("--level", type=_choice(Level), help="Only this level.")
@click.option("--status", type=_choice(WarningStatus), help="Only this status.")
@click.option("--scope", type=_choice(ScopeKind), help="Only this scope kind.")
@click.option("--enterprise", help="Only this enterprise id.")
@click.option("--grid", help="Only this grid id.")
@click.option("--since", help="start_time at or after (ISO 8601 with offset).")
@click.option("--until", help="start_time before (ISO 8601 with offset).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="At most.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def list_(
    ctx: click.Context,
    level: str | None,
    status: str | None,
    scope: str | None,
    enterprise: str | None,
    grid: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Warnings, newest first: id, level, status, deadline, enterprise, title."""
    answer = _run(
        _client(ctx).list(
            level=level,
            status=status,
            scope=scope,
            enterprise=enterprise,
            grid=grid,
            since=since,
            until=until,
            limit=limit,
        )
    )
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    for w in answer["warnings"]:
        click.echo(
            f"{w['id']}  {w['level']:<3} {w['status']:<12} "
            f"deadline={w.get('deadline') or '-'}  {w['enterprise_id']}/"
            f"{w['device_id']}  {w['title']}"
        )
    click.echo(f"{len(answer['warnings'])} of {answer['count']} warning(s)")


@warnings.command()
@click.argument("warning")
@click.option("--evidence/--no-evidence", default=True, help="Read the readings.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def show(ctx: click.Context, warning: str, evidence: bool, as_json: bool) -> None:
    """One warning with its audit trail (and its evidence series)."""
    w = _run(_client(ctx).show(warning, evidence=evidence))
    if as_json:
        click.echo(json.dumps(w, ensure_ascii=False, indent=2))
        return
    click.echo(f"{w['id']}  level {w['level']} ({w['colour']})  {w['status']}")
    click.echo(f"  {w['title']}")
    click.echo(f"  enterprise {w['enterprise_id']}  device {w['device_id']}")
    click.echo(f"  started {w['start_time']}  deadline {w.get('deadline') or '-'}")
    click.echo(f"  allowed: {', '.join(w['allowed_actions']) or 'nothing (final)'}")
    click.echo("  audit trail:")
    for entry in w["history"]:
        came = entry.get("from_status") or "-"
        click.echo(
            f"    {entry['at']}  {came} -> {entry['status']}  by {entry['by']}"
            + (f": {entry['comment']}" if entry.get("comment") else "")
        )
    for series in w.get("evidence", []):
        click.echo(
            f"  evidence {series['device']}/{series['metric']}: "
            f"{len(series['points'])} reading(s)"
            + (f" ({series['error']})" if series.get("error") else "")
        )


@warnings.command()
@click.argument("warning")
@click.pass_context
def cap(ctx: click.Context, warning: str) -> None:
    """The warning's latest version as an OASIS CAP 1.2 alert (XML)."""
    click.echo(_run(_client(ctx).cap(warning)), nl=False)


def _act(
    ctx: click.Context, warning: str, action: Action, body: dict[str, Any]
) -> None:
    answer = _run(_client(ctx).act(warning, action.value, body))
    if "warning" not in answer:
        click.echo(
            f"accepted {warning}: command {answer['command']} not applied yet", err=True
        )
        sys.exit(EXIT_PENDING)
    version = answer["warning"]
    click.echo(f"{version['status']} {warning} (version {len(version['history'])})")


_command_id = click.option(
    "--command-id", default=None, help="Makes a retry safe: applied once per id."
)


def _commented(name: str, action: Action, summary: str) -> None:
    """Add the command ``name``: ``action`` with an optional comment."""

    @warnings.command(name, help=summary)
    @click.argument("warning")
    @click.option("--comment", default="", help="Why, for the audit trail.")
    @_command_id
    @click.pass_context
    def command(
        ctx: click.Context, warning: str, comment: str, command_id: str | None
    ) -> None:
        _act(ctx, warning, action, {"comment": comment, "command_id": command_id})


_commented("ack", Action.ACKNOWLEDGE, "Acknowledge an open or resolved warning.")
_commented("close", Action.CLOSE, "Close a disposed or resolved warning.")


@warnings.command()
@click.argument("warning")
@click.option("--note", required=True, help="What was done (required).")
@_command_id
@click.pass_context
def dispose(
    ctx: click.Context, warning: str, note: str, command_id: str | None
) -> None:
    """Record how an acknowledged warning was handled."""
    _act(ctx, warning, Action.DISPOSE, {"note": note, "command_id": command_id})


@warnings.command()
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fallback file  [default: platform.fallback_file in the run folder]",
)
@click.pass_context
def resend(ctx: click.Context, path: Path | None) -> None:
    """Post the warnings of the fallback file to the platform again.

    Each event keeps its id, so the platform records it once even if it got
    it after all. Those that fail again, and lines that hold no warning
    event, stay in the file. Exits 1 while any event is still undelivered.
    """
    settings = settings_of(ctx)
    if path is not None and not path.exists():
        raise click.BadParameter(f"{path} does not exist", param_hint="'--file'")
    path = path or settings.run_dir / settings.platform.fallback_file
    result = _run(resend_fallback(settings.platform, signing_secret(settings), path))
    click.echo(
        f"delivered {result.delivered}, still undelivered {result.undelivered}, "
        f"kept {result.kept} lines that hold no warning event ({path})"
    )
    if result.undelivered:
        raise StillUndelivered(
            f"{result.undelivered} events failed again; they are back in {path}"
        )
