"""Errors of the alert_rules package, under :class:`riskwatch.errors.ConfigError`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from riskwatch.errors import ConfigError


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong in a rule file.

    Attributes:
        file: the rule file.
        rule: ``#<index> (<id>)`` of the rule within the file, None when the
            problem is with the file as a whole.
        field: dotted path of the offending field inside the rule, None when
            the problem is with the rule (or file) as a whole.
        message: what is wrong, with the value received and what is allowed.
    """

    file: Path
    rule: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = str(self.file)
        if self.rule is not None:
            where += f": rule {self.rule}"
        if self.field is not None:
            where += f" field {self.field}"
        return f"{where}: {self.message}"


class FieldError(ValueError):
    """Raised by a model-level check to name the field it is about.

    Pydantic locates model-level errors at the model itself; the loader reads
    ``field`` to report the field the author has to change.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class FieldErrors(ValueError):
    """Several :class:`FieldError` of one model, raised together so that the
    loader reports each of them, not only the first."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e}" for e in self.errors))


class RuleError(ConfigError):
    """Rule files that cannot be loaded; lists every problem found.

    Attributes:
        problems: each problem with its file, rule and field.
    """

    def __init__(self, problems: Iterable[RuleProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [f"{count} problem(s) in the rule files"]
        lines.extend(f"  {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))
