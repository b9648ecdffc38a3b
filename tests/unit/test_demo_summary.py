"""The demo's summary: warnings counted once, at the most severe level reached."""

from riskwatch.demo import DemoSummary, _print_summary, warnings_by_level


def version(ident, level, status, levels):
    """One published version of a warning, as the receiver keeps it."""
    return {
        "id": ident,
        "level": level,
        "status": status,
        "levels": [
            {"level": each, "from": f"2026-12-03T08:0{i}:00Z", "reason": "r"}
            for i, each in enumerate(levels)
        ],
    }


# A gas warning that opened at II, escalated to I, fell back to II when the
# step stopped being met, and resolved; a silence at IV; an anomaly at III.
ESCALATED = [
    version("W-gas", "II", "open", ["II"]),
    version("W-gas", "I", "open", ["II", "I"]),
    version("W-gas", "II", "open", ["II", "I", "II"]),
    version("W-gas", "II", "resolved", ["II", "I", "II"]),
]
OTHERS = [
    version("W-silent", "IV", "open", ["IV"]),
    version("W-silent", "IV", "resolved", ["IV"]),
    version("W-spike", "III", "open", ["III"]),
]


def test_an_escalated_warning_counts_once_at_its_most_severe_level():
    assert warnings_by_level(ESCALATED + OTHERS) == {"I": 1, "III": 1, "IV": 1}


def test_the_most_severe_level_counts_whatever_the_order_received():
    received = list(reversed(ESCALATED)) + OTHERS
    assert warnings_by_level(received) == {"I": 1, "III": 1, "IV": 1}


def test_a_level_seen_only_in_the_level_history_counts():
    # The receiver may keep only a later version (its bounded memory): the
    # level history still says the warning was at I.
    later = [version("W-gas", "II", "resolved", ["II", "I", "II"])]
    assert warnings_by_level(later) == {"I": 1}


def test_warnings_that_stay_at_their_level_count_at_it():
    assert warnings_by_level(OTHERS) == {"III": 1, "IV": 1}
    assert warnings_by_level([]) == {}


def test_the_summary_shows_the_most_severe_levels_and_says_so():
    lines: list[str] = []
    summary = DemoSummary(warnings_by_level=warnings_by_level(ESCALATED + OTHERS))
    _print_summary(summary, lines.append)
    assert (
        "warnings by level      I: 1, III: 1, IV: 1 "
        "(each warning at the most severe level it reached)"
    ) in lines


def test_the_summary_without_warnings_says_none():
    lines: list[str] = []
    _print_summary(DemoSummary(), lines.append)
    assert "warnings by level      none" in lines
