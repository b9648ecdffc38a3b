"""``riskwatch api``: the officer API process and its real seams."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from aiohttp import web

from alert_rules.api.app import ApiRunner, build_app
from alert_rules.api.auth import Tokens
from alert_rules.api.evidence import InfluxEvidence
from alert_rules.api.views import KafkaSink, RefusalView, SilenceView, WarningView
from alert_rules.loader import load_rules
from riskwatch.errors import RiskwatchError
from riskwatch.secrets import SecretStore
from riskwatch.settings import Settings
from riskwatch.topics import SILENCES, WARNING_REFUSALS, WARNING_STORE
from stream_jobs.outage import OUTAGE_RULE
from stream_jobs.registry_view import RegistryView

log = logging.getLogger(__name__)

READY_LINE = "officer api listening"


class ApiStartError(RiskwatchError):
    """The officer API could not start (address in use, Kafka unreachable)."""


async def serve(settings: Settings) -> None:
    """Run the API until SIGTERM or SIGINT."""
    secrets = SecretStore(settings.run_dir / "secrets")
    bootstrap = settings.kafka.bootstrap
    view = WarningView(bootstrap, WARNING_STORE)
    silences = SilenceView(bootstrap, SILENCES)
    refusals = RefusalView(bootstrap, WARNING_REFUSALS, view)
    # The worker's own view of the registry and its own rules: a silence may
    # name only what the worker can warn about. Both are read the worker's
    # way, so the rules are those of its rules_dir when the API started (the
    # worker, too, reads them once) and the registry follows each load.
    registry = RegistryView(bootstrap)
    rules = {rule.id for rule in load_rules(settings.worker.rules_dir)}
    sink = KafkaSink(bootstrap)
    influx = settings.influxdb
    evidence = InfluxEvidence(
        influx.url,
        secrets.get_or_create("influxdb-operator-token", influx.token),
        influx.org,
        influx.bucket,
    )
    app = build_app(
        view=view,
        silences=silences,
        sink=sink,
        evidence=evidence,
        tokens=Tokens.from_settings(settings.api, secrets),
        registry=registry,
        rules=rules | {OUTAGE_RULE},
        apply_timeout_s=settings.api.apply_timeout_s,
        evidence_points=settings.api.evidence_points,
        silence_limits=settings.api.silences,
        cap_sender=settings.platform.sender_id,
    )
    try:
        await sink.start()
    except Exception as exc:
        await evidence.close()
        raise ApiStartError(f"kafka at {bootstrap} not reachable: {exc!r}") from exc
    followers = [
        asyncio.create_task(v.follow()) for v in (view, silences, registry, refusals)
    ]
    runner = ApiRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.api.host, settings.api.port)
        try:
            await site.start()
        except OSError as exc:
            raise ApiStartError(
                f"cannot listen on {settings.api.host}:{settings.api.port}: "
                f"{exc.strerror}"
            ) from exc
        # Not waiting for the refusals: they are read from the topic's
        # beginning, so none is missed, and until then a refused command is
        # answered 202 as before.
        await view.ready.wait()
        await registry.ready.wait()
        log.info(
            "%s url=%s warnings=%d enterprises=%d rules=%d",
            READY_LINE,
            settings.api.url,
            len(view),
            len(registry),
            len(rules),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for task in followers:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        await sink.stop()
        await evidence.close()
        log.info("officer api stopped")
