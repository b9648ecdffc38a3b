"""Registry files: what is accepted, and errors that name the enterprise,
the field and the reason."""

import pytest
import yaml

from riskwatch.errors import ConfigError
from riskwatch.registry import load_registry
from riskwatch.registry_cli import sample_registry_path
from tests.unit.conftest import enterprise_entry as _enterprise


def _load(tmp_path, document):
    path = tmp_path / "registry.yaml"
    path.write_text(
        document if isinstance(document, str) else yaml.safe_dump(document),
        encoding="utf-8",
    )
    return load_registry(path)


def test_the_sample_registry_loads():
    registry = load_registry(sample_registry_path())
    assert len(registry.enterprises) >= 50


BAD = [
    (
        "duplicate device",
        {
            "enterprises": [
                _enterprise(
                    devices=[
                        {"id": "EM-01", "metrics": ["power_kw"]},
                        {"id": "EM-01", "metrics": ["energy_kwh"]},
                    ]
                )
            ]
        },
        "enterprise #0 (E001) field devices: device id EM-01 appears twice",
    ),
    (
        "duplicate metric",
        {
            "enterprises": [
                _enterprise(
                    devices=[{"id": "EM-01", "metrics": ["power_kw", "power_kw"]}]
                )
            ]
        },
        "enterprise #0 (E001) field devices.0.metrics: metric power_kw appears twice",
    ),
    (
        "duplicate enterprise",
        {"enterprises": [_enterprise(), _enterprise()]},
        "enterprise id E001 appears twice",
    ),
    (
        "unknown industry",
        {"enterprises": [_enterprise(industry="mining")]},
        "enterprise #0 (E001) field industry: Input should be",
    ),
    (
        "unknown time zone",
        {"enterprises": [_enterprise(timezone="Mars/Olympus")]},
        "enterprise #0 (E001) field timezone: unknown time zone 'Mars/Olympus'",
    ),
    ("empty file", "", "the file is empty; expected a mapping with 'enterprises'"),
]


@pytest.mark.parametrize(("name", "document", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_registry_is_refused_naming_enterprise_field_and_reason(
    tmp_path, name, document, message
):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, document)
    text = str(refused.value)
    assert message in text
    assert str(tmp_path / "registry.yaml") in text


def test_a_refused_value_is_echoed(tmp_path):
    with pytest.raises(ConfigError, match=r"field industry: .*\(got 'mining'\)"):
        _load(tmp_path, {"enterprises": [_enterprise(industry="mining")]})


# Every free-text field of the registry, as (where in the entry, the field
# path the error names, one line only).
FREE_TEXT = [
    ("name", "name", True),
    ("officer.name", "officer.name", True),
    ("officer.phone", "officer.phone", True),
    ("devices.0.description", "devices.0.description", False),
    ("shutdown_orders.0.reason", "shutdown_orders.0.reason", False),
    ("shutdown_orders.0.authority", "shutdown_orders.0.authority", True),
]
CONTROLS = ["\x1b]0;pwned\x07", "\x07", "\x00", "\x9b2J", "\x7f"]


def _with_text(where, text):
    entry = _enterprise(
        devices=[{"id": "EM-01", "metrics": ["power_kw"], "description": "meter"}],
        shutdown_orders=[
            {
                "order_id": "SO-1",
                "start": "2026-12-01T00:00:00+08:00",
                "reason": "fire inspection",
                "authority": "District Safety Office",
            }
        ],
    )
    *path, last = [int(p) if p.isdigit() else p for p in where.split(".")]
    node = entry
    for part in path:
        node = node[part]
    node[last] = f"ok {text} ok"
    return {"enterprises": [entry]}


@pytest.mark.parametrize("control", CONTROLS, ids=[repr(c)[1:-1] for c in CONTROLS])
@pytest.mark.parametrize(("where", "field", "one_line"), FREE_TEXT)
def test_control_characters_in_free_text_are_refused_naming_the_field(
    tmp_path, where, field, one_line, control
):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, _with_text(where, control))
    text = str(refused.value)
    code = f"U+{ord(control[0]):04X}"
    assert f"enterprise #0 (E001) field {field}: contains the control" in text
    assert f"character {code} at position 3" in text
    assert ("on one line" in text) is one_line
    # The message itself is safe to print: the value is shown escaped.
    assert control[0] not in text


@pytest.mark.parametrize(("where", "field", "one_line"), FREE_TEXT)
def test_tabs_and_line_breaks_are_text_except_in_one_line_fields(
    tmp_path, where, field, one_line
):
    document = _with_text(where, "two\tlines\r\n")
    if not one_line:
        _load(tmp_path, document)  # a folded YAML scalar ends with a line break
        return
    with pytest.raises(ConfigError, match=rf"field {field}: .* U\+0009 at position 6"):
        _load(tmp_path, document)


def test_printable_unicode_is_text(tmp_path):
    document = _with_text("name", "化工有限公司 Ünïcødé — №1")
    assert _load(tmp_path, document).enterprises[0].name.startswith("ok 化工")
