"""RegistryView.apply: one record of the compacted registry topic at a time."""

import logging
from pathlib import Path

import pytest

import riskwatch
from riskwatch.registry import load_registry
from stream_jobs.registry_view import RegistryView

SAMPLE_REGISTRY = Path(riskwatch.__file__).with_name("data") / "sample_registry.yaml"


@pytest.fixture(scope="module")
def enterprises():
    return load_registry(SAMPLE_REGISTRY).by_id()


@pytest.fixture
def view():
    # No Kafka: the bootstrap address is never contacted by apply().
    return RegistryView("127.0.0.1:1")


def record(enterprise):
    return enterprise.id.encode(), enterprise.model_dump_json().encode()


def test_add(view, enterprises):
    view.apply(*record(enterprises["HC001"]))
    view.apply(*record(enterprises["HC002"]))
    assert len(view) == 2
    assert view.get("HC001") == enterprises["HC001"]
    assert view.get("HC002") == enterprises["HC002"]
    assert view.get("HC003") is None


def test_update_replaces_the_enterprise(view, enterprises):
    original = enterprises["HC001"]
    view.apply(*record(original))
    moved = original.model_copy(update={"grid": "binhai-g1", "status": "closed"})
    view.apply(*record(moved))
    assert len(view) == 1
    assert view.get("HC001").grid == "binhai-g1"
    assert view.get("HC001").status == "closed"


def test_tombstone_removes(view, enterprises, caplog):
    view.apply(*record(enterprises["HC001"]))
    with caplog.at_level(logging.INFO, logger="stream_jobs.registry_view"):
        view.apply(b"HC001", None)
    assert view.get("HC001") is None
    assert len(view) == 0
    assert "registry removed enterprise=HC001" in caplog.text


def test_tombstone_of_an_unknown_enterprise_is_harmless(view, enterprises):
    view.apply(*record(enterprises["HC001"]))
    view.apply(b"ZZ999", None)
    assert len(view) == 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"{not json", id="invalid JSON"),
        pytest.param(b'{"id": "HC001"}', id="missing fields"),
        pytest.param(b"\xff\xfe", id="not UTF-8"),
    ],
)
def test_invalid_record_is_skipped_and_keeps_the_previous(
    view, enterprises, caplog, value
):
    view.apply(*record(enterprises["HC001"]))
    with caplog.at_level(logging.WARNING, logger="stream_jobs.registry_view"):
        view.apply(b"HC001", value)
    assert view.get("HC001") == enterprises["HC001"]
    assert "registry record invalid enterprise=HC001" in caplog.text


def test_key_and_id_mismatch_is_skipped(view, enterprises, caplog):
    _, value = record(enterprises["HC002"])
    with caplog.at_level(logging.WARNING, logger="stream_jobs.registry_view"):
        view.apply(b"HC001", value)
    assert view.get("HC001") is None
    assert view.get("HC002") is None
    assert "registry key HC001 holds enterprise=HC002" in caplog.text


def test_record_without_key_is_skipped(view, enterprises, caplog):
    _, value = record(enterprises["HC001"])
    with caplog.at_level(logging.WARNING, logger="stream_jobs.registry_view"):
        view.apply(None, value)
    assert len(view) == 0
    assert "registry record without key skipped" in caplog.text
