"""Graded early-warning rules (levels I-IV), their engine and warning records.

Public surface:

* :func:`load_rules` / :func:`check_rules`: read and validate rule files.
* :class:`Rule`, :class:`Level`, :class:`ScopeKind`: the rule model.
* :class:`RuleEngine`: observations in, :class:`WarningRecord` out, per-device
  state kept by the caller.
* :class:`RuleError`: a :class:`riskwatch.errors.ConfigError` listing every
  problem with file, rule and field.
"""

from alert_rules.engine import RuleEngine, subject_of
from alert_rules.errors import RuleError, RuleProblem
from alert_rules.loader import DEFAULTS_DIR, RuleCheck, check_rules, load_rules
from alert_rules.rule import Flap, Level, Rule, ScopeKind
from alert_rules.warning import (
    AuditEntry,
    Evidence,
    LevelEntry,
    Officer,
    WarningItem,
    WarningRecord,
    WarningScope,
    WarningStatus,
    warning_id,
)

__all__ = [
    "DEFAULTS_DIR",
    "AuditEntry",
    "Evidence",
    "Flap",
    "Level",
    "LevelEntry",
    "Officer",
    "Rule",
    "RuleCheck",
    "RuleEngine",
    "RuleError",
    "RuleProblem",
    "ScopeKind",
    "WarningItem",
    "WarningRecord",
    "WarningScope",
    "WarningStatus",
    "check_rules",
    "load_rules",
    "subject_of",
    "warning_id",
]
