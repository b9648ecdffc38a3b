"""``riskwatch warnings`` against the API served on a local port."""

import json

from click.testing import CliRunner

from alert_rules.cap import CAP_NAMESPACE
from riskwatch.cli import cli
from tests.capschema import validated
from tests.unit.alert_rules.api.conftest import OFFICER, VIEWER
from tests.unit.conftest import make_warning_record

OPENED = make_warning_record()


def _run(url, token, *args):
    return CliRunner().invoke(
        cli, ["warnings", "--url", url, "--token", token, *args], catch_exceptions=False
    )


def test_list_show_ack_dispose_close(served):
    url, seed = served
    seed(OPENED)
    listed = _run(url, VIEWER, "list", "--status", "open")
    assert listed.exit_code == 0, listed.output
    assert OPENED.id in listed.output
    assert "1 of 1 warning(s)" in listed.output
    for args, says in [
        (("ack", OPENED.id, "--comment", "seen"), "acknowledged"),
        (("dispose", OPENED.id, "--note", "valve closed"), "disposed"),
        (("close", OPENED.id), "closed"),
    ]:
        result = _run(url, OFFICER, *args)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"{says} {OPENED.id}")
    shown = _run(url, VIEWER, "show", OPENED.id)
    assert shown.exit_code == 0, shown.output
    assert "acknowledged -> disposed  by officer-li: valve closed" in shown.output
    assert "evidence GD-101/combustible_gas_lel: 1 reading(s)" in shown.output
    as_json = json.loads(_run(url, VIEWER, "show", OPENED.id, "--json").output)
    assert [e["status"] for e in as_json["history"]] == [
        "open",
        "acknowledged",
        "disposed",
        "closed",
    ]
    # The closed warning as a CAP document: its fourth version, a Cancel.
    capped = _run(url, VIEWER, "cap", OPENED.id)
    assert capped.exit_code == 0, capped.output
    doc = validated(capped.output.encode())
    ns = {"cap": CAP_NAMESPACE}
    assert doc.findtext("cap:identifier", namespaces=ns) == f"{OPENED.id}.v4"
    assert doc.findtext("cap:msgType", namespaces=ns) == "Cancel"
    missing = _run(url, VIEWER, "cap", "rw-nothing")
    assert missing.exit_code == 1
    assert "NotFound" in missing.output


def test_expected_failures_print_the_error_name_and_exit_1(served):
    url, seed = served
    seed(OPENED)
    cases = [
        (VIEWER, ("ack", OPENED.id), "Forbidden: user v (viewer) may only read"),
        ("nope", ("list",), "Unauthorized: "),
        (OFFICER, ("close", OPENED.id), "Conflict: warning"),
        (OFFICER, ("show", "rw-missing"), "NotFound: warning 'rw-missing'"),
        # An id with slashes stays one id, not a path to another resource.
        (OFFICER, ("show", "../../etc/passwd"), "NotFound: warning '../../etc/passwd'"),
        (OFFICER, ("dispose", OPENED.id, "--note", " "), "InvalidInput: note:"),
    ]
    for token, args, says in cases:
        result = _run(url, token, *args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(says), result.output
    result = _run("http://127.0.0.1:1", VIEWER, "list")
    assert result.exit_code == 1
    assert result.output.startswith("Unavailable: officer API at")


def test_help_works_without_settings_or_token():
    for command in ("list", "show", "ack", "dispose", "close"):
        result = CliRunner().invoke(cli, ["warnings", command, "--help"])
        assert result.exit_code == 0, result.output
    assert (
        "--note TEXT" in CliRunner().invoke(cli, ["warnings", "dispose", "-h"]).output
    )
