"""Every worker's view of the enterprise registry, read from its compacted topic.

Each worker reads *all* partitions of the registry topic from the beginning
(no consumer group), then follows it, so a new ``riskwatch registry load``
takes effect within a second and without a restart.

Why not a Faust GlobalTable: with a changelog topic of its own name (our
registry topic), faust-streaming 0.15's partition assignor looks the table up
under its default changelog name, raises KeyError inside the group join and
the worker waits forever without logging it.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from riskwatch.compacted import CompactedView
from riskwatch.registry import Enterprise
from riskwatch.topics import ENTERPRISES

log = logging.getLogger(__name__)


class RegistryView(CompactedView):
    """Enterprises by id, kept current from the registry topic."""

    def __init__(self, bootstrap: str, topic: str = ENTERPRISES) -> None:
        super().__init__(bootstrap, topic)
        self._enterprises: dict[str, Enterprise] = {}

    def get(self, enterprise_id: str) -> Enterprise | None:
        return self._enterprises.get(enterprise_id)

    def __len__(self) -> int:
        return len(self._enterprises)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the registry topic: an enterprise, or a tombstone."""
        if key is None:
            log.warning("registry record without key skipped topic=%s", self._topic)
            return
        ident = key.decode(errors="replace")
        if value is None:
            self._enterprises.pop(ident, None)
            log.info("registry removed enterprise=%s", ident)
            return
        try:
            enterprise = Enterprise.model_validate_json(value)
        except ValidationError as exc:
            log.warning(
                "registry record invalid enterprise=%s: %s",
                ident,
                exc.errors(include_url=False)[0]["msg"],
            )
            return
        if enterprise.id != ident:
            log.warning(
                "registry key %s holds enterprise=%s; skipped", ident, enterprise.id
            )
            return
        self._enterprises[ident] = enterprise

    def on_ready(self) -> None:
        log.info("registry loaded enterprises=%s", len(self))
