"""Rule files: validation messages name file, rule and field; the CLI lists all."""

from __future__ import annotations

from datetime import timedelta
from textwrap import dedent

import pytest
from click.testing import CliRunner

from alert_rules import RuleError, check_rules, load_rules
from alert_rules._base import parse_duration
from riskwatch.cli import cli
from riskwatch.contracts import RULE_DETECTORS
from riskwatch.errors import ConfigError

GOOD = """\
rules:
  - id: gas-orange
    title: Combustible gas above 25 %LEL
    level: II
    select: {metrics: [combustible_gas_lel]}
    when: {above: 25}
    clear: {below: 20}
    action: ventilate
    expected: below 25 %LEL
  - id: stuck
    title: Stuck
    level: IV
    when: {fired: [stuck]}
    action: inspect
    expected: varying readings
"""

BROKEN = """\
rules:
  - id: gas-orange
    title: Combustible gas above 25 %LEL
    level: V
    select: {metrics: [combustible_gas_lel]}
    when: {above: 25}
    action: ventilate
    expected: below 25 %LEL
  - id: stuck
    title: Stuck
    level: IV
    when: {fired: [stuck], above: 3}
    for: 5 minutes
    action: inspect
    expected: varying readings
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def test_check_names_file_rule_and_field_of_every_error(tmp_path):
    path = _write(tmp_path, "broken.yaml", BROKEN)
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "RuleError: 3 problem(s)" in result.output
    lines = [line.strip() for line in result.output.splitlines()[1:]]
    assert lines[0].startswith(f"{path}: rule #0 (gas-orange) field level: ")
    assert "'I', 'II', 'III' or 'IV'" in lines[0]
    assert "(got 'V')" in lines[0]
    assert lines[1].startswith(f"{path}: rule #1 (stuck) field when: ")
    assert "exactly one key" in lines[1]
    assert "'fired', 'above'" in lines[1]
    assert lines[2].startswith(f"{path}: rule #1 (stuck) field for: ")
    assert "'5 minutes'" in lines[2]


@pytest.mark.parametrize(
    ("factors", "timing", "message"),
    [
        ("{D: 0}", "for: 15m", "a risk factor must be above 0 and at most 10, got 0"),
        ("{D: 11}", "for: 15m", "a risk factor must be above 0 and at most 10, got 11"),
        ("{D: 0.5}", "", "risk factors scale `for` and the escalation steps'"),
    ],
)
def test_bad_risk_factors_are_named_with_their_class(
    tmp_path, factors, timing, message
):
    path = _write(
        tmp_path,
        "graded.yaml",
        f"""\
        rules:
          - id: graded
            title: Load in a shutdown
            level: II
            select: {{metrics: [power_kw]}}
            when: {{above: 5}}
            {timing}
            risk_factors: {factors}
            action: inspect
            expected: idle load
        """,
    )
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert f"{path}: rule #0 (graded) field risk_factors.D: {message}" in result.output


def test_every_model_level_problem_of_a_rule_is_listed_at_once(tmp_path):
    path = _write(
        tmp_path,
        "many.yaml",
        """\
        rules:
          - id: many
            title: Gas
            level: II
            select: {metrics: [combustible_gas_lel]}
            when: {above: 25}
            for: 5m
            clear: {below: 30}
            escalate: [{after: 30m, to: III}]
            risk_factors: {A: -1, B: .nan}
            valid_for: 0s
            action: ventilate
            expected: below 25 %LEL
        """,
    )
    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path)
    fields = [problem.field for problem in caught.value.problems]
    assert fields == [
        "clear.below",
        "risk_factors.A",
        "risk_factors.B",
        "valid_for",
        "escalate.0.to",
    ]
    assert {problem.rule for problem in caught.value.problems} == {"#0 (many)"}
    assert {problem.file for problem in caught.value.problems} == {path}
    by_field = {problem.field: problem.message for problem in caught.value.problems}
    assert by_field["risk_factors.B"].endswith("got nan")
    assert by_field["escalate.0.to"].endswith("got III")


def test_check_prints_a_summary_when_fine(tmp_path):
    _write(tmp_path, "gas.yaml", GOOD)
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"2 rule(s) in 1 file(s) under {tmp_path}" in result.output
    assert "gas-orange [II orange] device: value above 25" in result.output
    assert "clears on value below 20" in result.output


def test_check_without_directory_checks_the_shipped_rules(default_rules):
    result = CliRunner().invoke(cli, ["rules", "check"])
    assert result.exit_code == 0, result.output
    assert f"{len(default_rules)} rule(s) in " in result.output


def test_rules_commands_have_help():
    for args in (["rules", "--help"], ["rules", "check", "--help"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_load_rules_raises_a_config_error_listing_problems(tmp_path):
    path = _write(tmp_path, "broken.yaml", BROKEN)
    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path)
    assert isinstance(caught.value, ConfigError)
    problems = caught.value.problems
    assert [(p.file, p.rule, p.field) for p in problems] == [
        (path, "#0 (gas-orange)", "level"),
        (path, "#1 (stuck)", "when"),
        (path, "#1 (stuck)", "for"),
    ]


def test_files_are_read_recursively_and_ids_are_unique_across_them(tmp_path):
    _write(tmp_path, "a.yaml", GOOD)
    (tmp_path / "site").mkdir()
    second = _write(tmp_path / "site", "b.yaml", GOOD)
    check = check_rules(tmp_path)
    assert len(check.files) == 2
    assert [(p.file, p.rule, p.field) for p in check.problems] == [
        (second, "#0 (gas-orange)", "id"),
        (second, "#1 (stuck)", "id"),
    ]
    assert "already used in" in check.problems[0].message


def test_yml_files_are_read_like_yaml_files(tmp_path):
    _write(tmp_path, "good.yaml", GOOD)
    broken = _write(tmp_path, "extra.yml", BROKEN.replace("gas-orange", "other"))
    check = check_rules(tmp_path)
    assert [path.name for path in check.files] == ["extra.yml", "good.yaml"]
    assert {problem.file for problem in check.problems} == {broken}
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert f"{broken}: rule #0 (other) field level: " in result.output


def test_a_directory_named_like_a_rule_file_is_said_to_be_one(tmp_path):
    _write(tmp_path, "good.yaml", GOOD)
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    problems = check_rules(tmp_path).problems
    assert [(p.file, p.rule, p.field, p.message) for p in problems] == [
        (folder, None, None, "is a directory, not a rule file")
    ]


def test_a_file_that_is_not_utf8_is_named_without_a_traceback(tmp_path):
    (tmp_path / "x.yaml").write_bytes(b"rules: []\n# caf\xe9\n")
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{tmp_path / 'x.yaml'}: not UTF-8 text (byte 15: 0xe9)" in result.output


def test_a_dangling_symlink_cannot_be_read(tmp_path):
    _write(tmp_path, "good.yaml", GOOD)
    link = tmp_path / "gone.yml"
    link.symlink_to(tmp_path / "missing.yaml")
    problems = check_rules(tmp_path).problems
    assert [(p.file, p.message) for p in problems] == [
        (
            link,
            f"cannot be read: a symbolic link to {tmp_path / 'missing.yaml'}, "
            "which does not exist",
        )
    ]


def test_an_unreadable_file_says_why(tmp_path, monkeypatch):
    path = _write(tmp_path, "good.yaml", GOOD)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "read_text", refuse)
    problems = check_rules(tmp_path).problems
    assert [(p.file, p.message) for p in problems] == [
        (path, "cannot be read: Permission denied")
    ]


@pytest.mark.parametrize(
    ("text", "rule", "field", "fragment"),
    [
        ("rules: [\n", None, None, "not valid YAML"),
        ("", None, None, "expected a mapping with a 'rules' list"),
        ("rules: []\n", None, "rules", "at least 1 item"),
        (
            "rules:\n  - {id: x, title: t, level: I, when: {fired: [stuck]},"
            " action: a, expected: e, colour: red}\n",
            "#0 (x)",
            None,
            "unknown key(s) 'colour'; allowed: ",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I, when: {above: 3},"
            " action: a, expected: e}\n",
            "#0 (x)",
            "select.metrics",
            "must list its metrics",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I, when: {above: 3},"
            " select: {metrics: [power_kw, temperature_c]},"
            " action: a, expected: e}\n",
            "#0 (x)",
            "select.metrics",
            "metrics of one unit, got kW, °C",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I, when: {above: 3},"
            " select: {metrics: [power_kw, energy_kwh]},"
            " action: a, expected: e, max_gap: 0}\n",
            "#0 (x)",
            "max_gap",
            "longer than 0s",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I,"
            " when: {all: [{context: shut}]}, action: a, expected: e}\n",
            "#0 (x)",
            "when.all.0.context",
            "(got 'shut')",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I,"
            " when: {score: {at_least: 1.5}}, action: a, expected: e}\n",
            "#0 (x)",
            "when.score.at_least",
            "less than or equal to 1",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I, scope: city,"
            " when: {silent: false}, action: a, expected: e}\n",
            "#0 (x)",
            "scope",
            "'device', 'enterprise', 'grid', 'district' or 'feed'",
        ),
        (
            "rules:\n  - {id: x, title: t, level: I, scope: feed,"
            " when: {silent: true}, action: a, expected: e}\n",
            "#0 (x)",
            "scope",
            "feed warnings are the worker's own",
        ),
        (
            "rules:\n  - {id: 'bad id', title: t, level: I,"
            " when: {silent: true}, action: a, expected: e}\n",
            "#0 (bad id)",
            "id",
            "should match pattern",
        ),
    ],
)
def test_error_cases(tmp_path, text, rule, field, fragment):
    path = _write(tmp_path, "r.yaml", text)
    problems = check_rules(tmp_path).problems
    assert problems, "expected a problem"
    first = problems[0]
    assert (first.file, first.rule, first.field) == (path, rule, field)
    assert fragment in first.message


KNOWN_DETECTORS = (
    "known detectors: counter, deviation, ewma, gap, level_shift, "
    "rate_of_change, robust_z, seasonal, stuck"
)


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        (
            "when: {score: {at_least: 0.5, detectors: [nosuch]}}",
            "when.score.detectors.0",
        ),
        (
            "when: {score: {at_least: 0.5, detectors: [robust_z, nosuch]}}",
            "when.score.detectors.1",
        ),
        ("when: {fired: [nosuch]}", "when.fired.0"),
        ("when: {all: [{silent: true}, {fired: [nosuch]}]}", "when.all.1.fired.0"),
        (
            "when: {any: [{score: {at_least: 0.5, detectors: [nosuch]}}]}",
            "when.any.0.score.detectors.0",
        ),
        ("when: {not: {fired: [nosuch]}}", "when.not.fired.0"),
        (
            "when: {fired: [stuck]}\n            clear: {not: {fired: [nosuch]}}",
            "clear.not.fired.0",
        ),
        (
            "when: {fired: [stuck]}\n"
            "            escalate: [{when: {fired: [nosuch]}, to: III}]",
            "escalate.0.when.fired.0",
        ),
        (
            "when: {fired: [stuck]}\n"
            "            escalate: [{after: 1h, to: III, clear: {fired: [nosuch]}}]",
            "escalate.0.clear.fired.0",
        ),
    ],
)
def test_an_unknown_detector_is_refused_where_it_is_named(tmp_path, condition, field):
    path = _write(
        tmp_path,
        "typo.yaml",
        f"""\
        rules:
          - id: typo
            title: A detector misspelt
            level: IV
            {condition}
            action: inspect
            expected: a rule that can fire
        """,
    )
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "RuleError: 1 problem(s)" in result.output
    assert (
        f"{path}: rule #0 (typo) field {field}: unknown detector 'nosuch'; "
        f"{KNOWN_DETECTORS}"
    ) in result.output


def test_a_detector_whose_findings_never_score_is_refused(tmp_path):
    path = _write(
        tmp_path,
        "missing.yaml",
        """\
        rules:
          - id: nan
            title: Not a number
            level: IV
            when: {fired: [missing]}
            action: inspect
            expected: numbers
        """,
    )
    problems = check_rules(tmp_path).problems
    assert [(p.file, p.rule, p.field) for p in problems] == [
        (path, "#0 (nan)", "when.fired.0")
    ]
    assert "'missing' findings always score 0" in problems[0].message
    assert problems[0].message.endswith(KNOWN_DETECTORS)


def test_every_detector_a_rule_may_name_is_accepted(tmp_path):
    names = ", ".join(sorted(RULE_DETECTORS))
    _write(
        tmp_path,
        "all.yaml",
        f"""\
        rules:
          - id: every-detector
            title: Any detector
            level: IV
            when: {{score: {{at_least: 0.5, detectors: [{names}]}}}}
            clear: {{not: {{fired: [{names}]}}}}
            action: inspect
            expected: nothing unusual
        """,
    )
    check = check_rules(tmp_path)
    assert check.problems == []
    assert [rule.id for rule in check.rules] == ["every-detector"]


def test_an_empty_or_missing_directory_is_a_problem(tmp_path):
    assert "no *.yaml or *.yml rule files" in check_rules(tmp_path).problems[0].message
    missing = tmp_path / "none"
    assert check_rules(missing).problems[0].message == "no such directory"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("250ms", 0.25),
        (0, 0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5 minutes", "", "m5", -1, True, None, "1w"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


LONG_SILENCES = """\
rules:
  - id: long-silence
    title: Silent for long
    level: IV
    when:
      any:
        - silent: 30m
        - not: {silent: 10m}
    clear: {not: {silent: 2h}}
    escalate:
      - {after: 1h, to: III, when: {silent: 15m}}
    action: inspect
    expected: readings
"""


def test_a_silence_longer_than_the_worker_waits_is_named_with_its_field(tmp_path):
    (tmp_path / "silence.yaml").write_text(LONG_SILENCES)
    problems = check_rules(tmp_path, silent_after_s=900).problems
    assert [(p.rule, p.field) for p in problems] == [
        ("#0 (long-silence)", "when.any.0.silent"),
        ("#0 (long-silence)", "clear.not.silent"),
    ]
    assert "worker.silent_after_s" in problems[0].message
    # Without the worker's setting (or with a longer one) nothing to say.
    assert check_rules(tmp_path).problems == []
    assert check_rules(tmp_path, silent_after_s=7200).problems == []


def test_rules_check_judges_silences_by_the_settings(tmp_path, monkeypatch):
    (tmp_path / "silence.yaml").write_text(LONG_SILENCES)
    runner = CliRunner()
    refused = runner.invoke(cli, ["rules", "check", str(tmp_path)])
    assert refused.exit_code == 1
    assert "when.any.0.silent" in refused.output
    monkeypatch.setenv("RISKWATCH_WORKER__SILENT_AFTER_S", "7200")
    accepted = runner.invoke(cli, ["rules", "check", str(tmp_path)])
    assert accepted.exit_code == 0, accepted.output


@pytest.mark.parametrize(
    "text", ["99999999999999999999999d", "999999999999999999h", 10**30, 1e300]
)
def test_a_duration_too_long_for_a_timedelta_is_a_problem(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_rules_check_names_a_huge_duration_without_a_traceback(tmp_path):
    (tmp_path / "gas.yaml").write_text(
        GOOD.replace("clear: {below: 20}", "clear: {below: 20}\n    for: 99999999999d")
    )
    result = CliRunner().invoke(cli, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "rule #0 (gas-orange) field for:" in result.output
    assert "Traceback" not in result.output


BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
rules:
  - id: bomb
    title: t
    level: II
    select: {enterprises: *g}
    when: {above: 25}
    action: a
    expected: e
"""


def test_a_yaml_bomb_is_one_problem_not_millions(tmp_path):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    check = check_rules(tmp_path)
    [problem] = check.problems
    assert "aliases" in str(problem)
    assert len(str(problem)) < 500


def test_anchors_within_reason_are_still_read(tmp_path):
    shared = GOOD.replace(
        "select: {metrics: [combustible_gas_lel]}",
        "select: &gas {metrics: [combustible_gas_lel]}",
    )
    shared = shared.replace(
        "    when: {fired: [stuck]}", "    select: *gas\n    when: {fired: [stuck]}"
    )
    (tmp_path / "shared.yaml").write_text(shared)
    check = check_rules(tmp_path)
    assert check.problems == []
    assert [r.id for r in check.rules] == ["gas-orange", "stuck"]


def test_a_file_nested_too_deeply_is_a_problem_not_a_traceback(tmp_path):
    (tmp_path / "deep.yaml").write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    [problem] = check_rules(tmp_path).problems
    assert "nested too deeply" in str(problem)


def test_a_key_given_twice_in_a_rule_is_a_problem_naming_rule_and_field(tmp_path):
    # YAML readers keep the last value silently: level II then III was a
    # level III rule, without a word.
    twice = GOOD.replace("    level: II\n", "    level: II\n    level: III\n", 1)
    twice = twice.replace("when: {above: 25}", "when: {above: 25, above: 50}")
    (tmp_path / "gas.yaml").write_text(twice)
    problems = [str(p) for p in check_rules(tmp_path).problems]
    assert len(problems) == 2, problems
    assert (
        "rule #0 (gas-orange) field level: given twice (lines 4 and 5)" in problems[0]
    )
    assert "rule #0 (gas-orange) field when.above: given twice" in problems[1]


def test_a_top_level_key_given_twice_is_a_problem(tmp_path):
    (tmp_path / "gas.yaml").write_text(GOOD + "rules: []\n")
    problem = check_rules(tmp_path).problems[0]
    assert "gas.yaml field rules: given twice" in str(problem)


def test_a_key_that_overrides_a_merged_one_is_not_given_twice(tmp_path):
    (tmp_path / "merged.yaml").write_text(
        dedent(
            """\
            x-base: &base {title: t, level: II, when: {above: 25}, action: a}
            rules:
              - <<: *base
                id: merged
                level: I
                select: {metrics: [combustible_gas_lel]}
                expected: e
            """
        )
    )
    problems = [str(p) for p in check_rules(tmp_path).problems]
    assert not any("given twice" in p for p in problems), problems


HYSTERESIS = """\
rules:
  - id: hyst
    title: Hysteresis
    level: III
    select: {select}
    when: {when}
    clear: {clear}
    action: inspect
    expected: normal readings
"""


@pytest.mark.parametrize(
    ("when", "clear", "field", "fragment"),
    [
        (
            "{above: 25}",
            "{below: 30}",
            "clear.below",
            "clear value below 30 can hold while the rule fires on value above 25"
            " (a clear bound must be at most 25)",
        ),
        (
            "{below: 10}",
            "{above: 5}",
            "clear.above",
            "clear value above 5 can hold while the rule fires on value below 10"
            " (a clear bound must be at least 10)",
        ),
        (
            "{above: 25}",
            "{above: 25}",
            "clear",
            "clear is the same as when (value above 25)",
        ),
        (
            "{above: 25}",
            "{above: 30}",
            "clear.above",
            "(both hold on the same side)",
        ),
        (
            "{above: 25}",
            "{not: {above: 30}}",
            "clear.not.above",
            "a clear bound must be at most 25",
        ),
        (
            "{score: {at_least: 0.5}}",
            "{not: {score: {at_least: 0.7}}}",
            "clear.not.score.at_least",
            "clear not combined score at least 0.7 can hold while the rule fires"
            " on combined score at least 0.5",
        ),
        (
            "{all: [{context: shutdown_order}, {above_idle: 1.5}]}",
            "{any: [{not: {context: shutdown_order}}, {below_idle: 2}]}",
            "clear.any.1.below_idle.factor",
            "a clear bound must be at most 1.5",
        ),
        (
            "{any: [{below: 5}, {above: 25}]}",
            "{all: [{above: 3}, {below: 23}]}",
            "clear.all",
            "can hold while the rule fires on value below 5, so it gives no",
        ),
        (
            "{any: [{below: 5}, {above: 25}]}",
            "{all: [{above: 7}, {below: 27}]}",
            "clear.all",
            "can hold while the rule fires on value above 25, so it gives no",
        ),
        (
            "{any: [{above: 25}, {context: shutdown_order}]}",
            "{below: 30}",
            "clear.below",
            "fires on value above 25 (a clear bound must be at most 25)",
        ),
        (
            "{clock_skew_above: 5m}",
            "{not: {clock_skew_above: 10m}}",
            "clear.not.clock_skew_above",
            "a clear bound must be at most 5m",
        ),
    ],
)
def test_a_clear_that_holds_while_the_rule_fires_is_a_problem(
    tmp_path, when, clear, field, fragment
):
    select = "{}" if "clock" in when else "{metrics: [power_kw]}"
    text = HYSTERESIS.format(select=select, when=when, clear=clear)
    path = _write(tmp_path, "hyst.yaml", text)
    problems = check_rules(tmp_path).problems
    assert [(p.file, p.rule, p.field) for p in problems] == [(path, "#0 (hyst)", field)]
    assert fragment in problems[0].message


@pytest.mark.parametrize(
    ("when", "clear"),
    [
        ("{above: 25}", "{below: 20}"),
        ("{above: 25}", "{below: 25}"),
        ("{below: 10}", "{above: 12}"),
        ("{above: 25}", "{not: {above: 25}}"),
        ("{score: {at_least: 0.5}}", "{not: {score: {at_least: 0.25}}}"),
        ("{above: 25}", "{any: [{below: 20}, {stale: 10m}]}"),
        ("{any: [{below: 5}, {above: 25}]}", "{all: [{above: 7}, {below: 23}]}"),
        ("{any: [{below: 5}, {above: 25}]}", "{all: [{above: 5}, {below: 25}]}"),
        # A member the check cannot judge (stale) leaves the all unjudged.
        ("{above: 25}", "{all: [{below: 30}, {stale: 10m}]}"),
        # Never both: the clear's own bounds do not meet.
        ("{above: 25}", "{all: [{below: 30}, {above: 40}]}"),
    ],
)
def test_a_clear_on_the_safe_side_is_accepted(tmp_path, when, clear):
    _write(
        tmp_path,
        "hyst.yaml",
        HYSTERESIS.format(select="{metrics: [power_kw]}", when=when, clear=clear),
    )
    assert check_rules(tmp_path).problems == []


def test_an_escalation_step_clear_is_checked_against_its_condition(tmp_path):
    path = _write(
        tmp_path,
        "step.yaml",
        """\
        rules:
          - id: gas
            title: Gas
            level: II
            select: {metrics: [combustible_gas_lel]}
            when: {above: 25}
            clear: {below: 20}
            escalate:
              - when: {above: 40}
                clear: {below: 45}
                to: I
            action: ventilate
            expected: below 25 %LEL
        """,
    )
    problems = check_rules(tmp_path).problems
    assert [(p.file, p.field) for p in problems] == [(path, "escalate.0.clear.below")]
    assert "value below 45" in problems[0].message
    assert "value above 40" in problems[0].message
