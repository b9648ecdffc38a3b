"""The value codec of the worker's ``device-state`` table.

A device's state is a dict of plain values (the rule engine's, the counters')
holding one detector state per series, whose statistics are a fixed binary
record (:mod:`stream_jobs.detection.state`). msgpack carries those records as
bytes, and everything else as JSON would (tuples become lists), but exactly:
NaN stays NaN and integer keys stay integers. Values the table stored before
(Faust's JSON codec, detector STATE_VERSION 4 and earlier) are read as JSON,
and their series states are converted on their next reading.

Registered with Faust as :data:`NAME` on import.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import msgpack
from faust.serializers import codecs
from faust.utils import json

__all__ = ["NAME", "StateCodec", "dumps", "loads"]

NAME: Final = "riskwatch-state"

_PACKERS = threading.local()


def dumps(value: Any) -> bytes:  # noqa: ANN401 - plain values of any shape
    """``value`` as the table stores it.

    Raises:
        TypeError: a value msgpack cannot carry (not a plain value).
    """
    # One packer per thread, kept: building one per call (msgpack.packb) was
    # more than half of the call's cost on a device state.
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    # (A packer that fails drops what it had packed: the next call starts clean.)
    packed: bytes = packer.pack(value)
    return packed


def loads(data: bytes) -> Any:  # noqa: ANN401 - plain values of any shape
    """A value :func:`dumps` wrote, or one the JSON codec wrote before.

    Raises:
        ValueError: neither msgpack nor JSON (msgpack's own errors are
            ValueError subclasses).
    """
    # A JSON object starts with "{", which in msgpack would be the whole
    # document "the integer 123": never a device state.
    if data[:1] == b"{":
        return json.loads(data)  # type: ignore[arg-type]  # orjson takes bytes
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class StateCodec(codecs.Codec):
    """:func:`dumps` / :func:`loads` as a Faust codec."""

    def _dumps(self, s: Any) -> bytes:  # noqa: ANN401 - as Faust's codecs
        return dumps(s)

    def _loads(self, s: bytes) -> Any:  # noqa: ANN401 - as Faust's codecs
        return loads(s)


codecs.register(NAME, StateCodec())
