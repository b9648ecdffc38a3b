"""One WARNING when Kafka is lost, one INFO when it is back.

aiokafka logs every failed retry while the brokers cannot be reached: about
80 lines a second from the officer API and 230 from a worker here, which
bury everything else in the log. It has no setting for that (the backoff
settings only space the retries), so :class:`KafkaOutageGate`, a logging
filter on aiokafka's loggers, holds those lines back per logger:

* the first connection failure a logger reports becomes one WARNING line
  ``kafka connection lost logger=<name>: <its message>``; the further ones
  are counted, not written;
* the first answer from a broker afterwards (aiokafka's DEBUG line for each
  response, which the gate enables on ``aiokafka.conn`` and drops unless the
  log level shows DEBUG anyway) writes one INFO line per logger that was
  down: ``kafka connection back logger=<name> down_s=... held_back=...``.

A logger whose connection comes and goes (one broker of several down, a
flaky network) reports a loss at most once per ``repeat_after_s``; the
failures in between are counted into the next line. Lines that are not
about the connection (an unknown topic, a rebalance) pass unchanged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from riskwatch.timeouts import Clock

log = logging.getLogger(__name__)

# aiokafka's module loggers that report connection trouble ("aiokafka" is the
# client's).
LOGGERS = (
    "aiokafka",
    "aiokafka.cluster",
    "aiokafka.conn",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)
_CONN = "aiokafka.conn"
# The format string aiokafka.conn logs (DEBUG) for every response a broker sent.
_RESPONSE = "Response from %s:%d %d: %s"
# What aiokafka 0.14 says when it cannot reach or keep a broker.
_TROUBLE = re.compile(
    r"Unable connect|Unable to connect|Unable to (update|request) metadata"
    r"|NodeNotReadyError|KafkaConnectionError|Connect call failed"
    r"|RequestTimedOutError|Connection at \S+ (closed|broken)"
    r"|Coordinator Request failed|marking coordinator dead|Marking the coordinator"
)


@dataclass
class _Logger:
    down_since: float | None = None
    announced: bool = False
    last_announced: float | None = None
    held: int = 0


class KafkaOutageGate(logging.Filter):
    """Holds back aiokafka's repeated connection failures (see the module).

    Args:
        show_debug: whether DEBUG lines of ``aiokafka.conn`` are to be
            written (the log level shows them); the gate itself enables them
            to hear that a broker answers.
        repeat_after_s: least time between two loss lines of one logger.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        *,
        show_debug: bool = False,
        repeat_after_s: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__()
        self._show_debug = show_debug
        self._repeat_after_s = repeat_after_s
        self._clock = clock
        self._loggers: dict[str, _Logger] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            if record.name == _CONN:
                # Never format these: the response struct can be large.
                if record.msg == _RESPONSE:
                    self._back()
                return self._show_debug
            return True
        message = record.getMessage()
        if not _TROUBLE.search(message):
            return True
        self._lost(record.name, message)
        return False

    def _lost(self, name: str, message: str) -> None:
        now = self._clock()
        with self._lock:
            state = self._loggers.setdefault(name, _Logger())
            if state.down_since is None:
                # held keeps the failures of blips not reported (too soon).
                state.down_since, state.announced = now, False
            quiet = (
                state.last_announced is not None
                and now - state.last_announced < self._repeat_after_s
            )
            if state.announced or quiet:
                state.held += 1
                return
            state.announced, state.last_announced = True, now
            down_s, held = now - state.down_since, state.held
        log.warning(
            "kafka connection lost logger=%s down_s=%.1f held_back=%d: %s "
            "(its further connection errors are held back until a broker answers)",
            name,
            down_s,
            held,
            message,
        )

    def _back(self) -> None:
        now = self._clock()
        back: list[tuple[str, float, int]] = []
        with self._lock:
            for name, state in self._loggers.items():
                if state.down_since is None:
                    continue
                if state.announced:
                    back.append((name, now - state.down_since, state.held))
                    state.held = 0
                state.down_since, state.announced = None, False
        for name, down_s, held in back:
            log.info(
                "kafka connection back logger=%s down_s=%.1f held_back=%d",
                name,
                down_s,
                held,
            )


def install_kafka_gate(
    level: int,
    loggers: Iterable[str] = LOGGERS,
    *,
    repeat_after_s: float = 60.0,
    clock: Clock = time.monotonic,
) -> KafkaOutageGate:
    """Put one :class:`KafkaOutageGate` on each of ``loggers``.

    Args:
        level: the level the operator log shows (the gate keeps aiokafka's
            DEBUG lines out above DEBUG).
        loggers: the logger names; a filter on a logger sees only the lines
            logged to it, not its children's, so each is named.
        repeat_after_s, clock: as for :class:`KafkaOutageGate`.
    """
    gate = KafkaOutageGate(
        show_debug=level <= logging.DEBUG, repeat_after_s=repeat_after_s, clock=clock
    )
    for name in loggers:
        logger = logging.getLogger(name)
        # One gate per logger, also when the CLI is invoked again in-process.
        for old in [f for f in logger.filters if isinstance(f, KafkaOutageGate)]:
            logger.removeFilter(old)
        logger.addFilter(gate)
        if name == _CONN:
            logger.setLevel(logging.DEBUG)
    return gate


def remove_kafka_gate(gate: KafkaOutageGate, loggers: Iterable[str] = LOGGERS) -> None:
    """Undo :func:`install_kafka_gate` (for tests)."""
    for name in loggers:
        logger = logging.getLogger(name)
        logger.removeFilter(gate)
        if name == _CONN:
            logger.setLevel(logging.NOTSET)
