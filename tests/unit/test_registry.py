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
