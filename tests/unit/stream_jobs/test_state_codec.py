"""The device-state table's codec: its kept msgpack packer."""

import msgpack
import pytest

from stream_jobs import state_codec
from stream_jobs.detectors import new_state


def _state(i: int) -> dict:
    return {"rules": {"r1": [i, None, float("nan")]}, "s": new_state(), 7: "x" * i}


def test_a_value_it_cannot_carry_leaves_nothing_behind_for_the_next():
    state_codec.dumps(_state(1))
    with pytest.raises(TypeError):
        state_codec.dumps({"half": [1, 2, object()]})
    # Exactly what a fresh packer writes: nothing of the failed value first.
    assert state_codec.dumps(_state(2)) == msgpack.packb(_state(2), use_bin_type=True)
