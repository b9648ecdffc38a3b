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

from riskwatch.compacted import ModelView
from riskwatch.registry import Enterprise
from riskwatch.topics import ENTERPRISES

log = logging.getLogger(__name__)


class RegistryView(ModelView[Enterprise]):
    """Enterprises by id, kept current from the registry topic."""

    def __init__(self, bootstrap: str, topic: str = ENTERPRISES) -> None:
        super().__init__(
            bootstrap,
            topic,
            Enterprise,
            label="registry",
            what="enterprise",
            logger=log,
        )

    def accept(self, key: str, item: Enterprise) -> bool:
        if item.id != key:
            log.warning("registry key %s holds enterprise=%s; skipped", key, item.id)
            return False
        return True

    def on_ready(self) -> None:
        log.info("registry loaded enterprises=%s", len(self))
