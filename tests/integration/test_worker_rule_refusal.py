"""A worker started with rules it cannot honour refuses to run, naming them."""

from __future__ import annotations

from tests.integration.conftest import run_riskwatch


def test_a_worker_with_a_silence_it_can_never_report_refuses_to_start(stack, tmp_path):
    (tmp_path / "silence.yaml").write_text(
        "rules:\n"
        "  - id: silent-half-hour\n"
        "    title: Silent for half an hour\n"
        "    level: IV\n"
        "    when: {silent: 30m}\n"
        "    action: inspect\n"
        "    expected: readings\n"
    )
    env = {
        "RISKWATCH_WORKER__RULES_DIR": str(tmp_path),
        "RISKWATCH_WORKER__SILENT_AFTER_S": "900",
    }
    result = run_riskwatch("worker", env=env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "silent-half-hour" in output
    assert "when.silent" in output
    assert "worker.silent_after_s" in output
