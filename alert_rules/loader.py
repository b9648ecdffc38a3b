"""Reading rule files: every problem is reported with its file, rule and field."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from alert_rules._base import format_duration
from alert_rules.conditions import Silent
from alert_rules.errors import FieldError, FieldErrors, RuleError, RuleProblem
from alert_rules.rule import Rule, RuleFile

logger = logging.getLogger(__name__)

DEFAULTS_DIR = Path(__file__).with_name("defaults")
"""The default rules shipped with riskwatch (package data)."""

RULE_FILE_SUFFIXES = (".yaml", ".yml")
"""The endings of rule files; both are common for YAML."""


@dataclass
class RuleCheck:
    """What :func:`check_rules` found.

    Attributes:
        files: the rule files read, in order.
        rules: the valid rules, in file order.
        problems: every problem; the rules are only usable when empty.
    """

    files: list[Path] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)


def check_rules(
    directory: Path | None = None, *, silent_after_s: float | None = None
) -> RuleCheck:
    """Read and validate every ``*.yaml`` and ``*.yml`` file under a directory
    (recursively).

    Args:
        directory: where the rule files are; None reads the shipped defaults.
        silent_after_s: the worker's ``worker.silent_after_s``, when known: a
            ``silent`` duration longer than it can never hold, since the
            worker reports a device's silence once, that long after its last
            reading (a problem).

    Returns:
        The rules and every problem found, without raising for bad files.
        A rule id used twice (in one file or in two) is a problem.
    """
    directory = DEFAULTS_DIR if directory is None else directory
    check = RuleCheck()
    if not directory.is_dir():
        problem = RuleProblem(directory, None, None, "no such directory")
        check.problems.append(problem)
        return check
    check.files = rule_files(directory)
    if not check.files:
        message = "no *.yaml or *.yml rule files in this directory"
        check.problems.append(RuleProblem(directory, None, None, message))
    seen: dict[str, Path] = {}
    for path in check.files:
        rules, problems = _read_file(path)
        check.problems.extend(problems)
        for index, rule in rules:
            if rule.id in seen:
                message = f"rule id {rule.id!r} is already used in {seen[rule.id]}"
                where = f"#{index} ({rule.id})"
                check.problems.append(RuleProblem(path, where, "id", message))
                continue
            seen[rule.id] = path
            check.rules.append(rule)
            if silent_after_s is not None:
                where = f"#{index} ({rule.id})"
                check.problems.extend(
                    RuleProblem(path, where, field_path, message)
                    for field_path, message in _never_silent(rule, silent_after_s)
                )
    return check


def rule_files(directory: Path) -> list[Path]:
    """The rule files under ``directory`` (recursively), in path order: every
    entry whose name ends in one of :data:`RULE_FILE_SUFFIXES`. The worker
    and ``rules check`` both read this list, so they judge the same files."""
    return sorted(
        path for path in directory.rglob("*") if path.suffix in RULE_FILE_SUFFIXES
    )


def _never_silent(rule: Rule, silent_after_s: float) -> Iterator[tuple[str, str]]:
    """The ``silent`` conditions of ``rule`` longer than the worker waits."""
    for path, condition in rule.conditions():
        if isinstance(condition, Silent) and (
            condition.silent.total_seconds() > silent_after_s
        ):
            yield (
                path,
                f"silent: {format_duration(condition.silent)} can never hold: "
                f"the worker reports a silence once, {silent_after_s:g} s "
                "(worker.silent_after_s) after the device's last reading; use "
                "silent: true, a duration up to that, or raise "
                "worker.silent_after_s",
            )


def load_rules(
    directory: Path | None = None, *, silent_after_s: float | None = None
) -> list[Rule]:
    """The rules of a directory, or the shipped defaults when None
    (``silent_after_s``: see :func:`check_rules`).

    Raises:
        RuleError: a :class:`~riskwatch.errors.ConfigError` listing every
            problem with its file, rule and field.
    """
    check = check_rules(directory, silent_after_s=silent_after_s)
    if check.problems:
        raise RuleError(check.problems)
    logger.info(
        "rules loaded rules=%d files=%d dir=%s",
        len(check.rules),
        len(check.files),
        directory or DEFAULTS_DIR,
    )
    return check.rules


# A file's nodes once its aliases are expanded, at most this many times the
# nodes written in it (and at least this budget's floor): anchors that share a
# block between rules stay far below, a "billion laughs" file far above.
ALIAS_EXPANSION_FACTOR = 10
ALIAS_EXPANSION_FLOOR = 10_000


class _AliasBomb(Exception):
    def __init__(self, written: int, budget: int) -> None:
        super().__init__(
            f"not valid YAML: its aliases (*name) expand its {written} nodes to more "
            f"than {budget}; write the shared parts out or use fewer aliases"
        )


def _expanded_size_within(root: yaml.Node, budget: int) -> bool:
    """Whether ``root`` expands (each alias counted in full) to at most
    ``budget`` nodes; stops counting as soon as it does not."""
    count = 0
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > budget:
            return False
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return True


def _written_size(root: yaml.Node) -> int:
    """The distinct nodes of a composed document (aliases counted once)."""
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return len(seen)


@dataclass
class _TwiceGiven:
    """A mapping key given twice: where (keys and list indexes down to the
    mapping, then the key) and the lines of both."""

    path: list[str | int]
    first_line: int
    second_line: int


def _keys_given_twice(root: yaml.Node) -> list[_TwiceGiven]:
    """The keys written twice in one mapping, in file order. A YAML reader
    keeps the last silently, so ``level: II`` then ``level: III`` would be a
    level III rule without a word."""
    found: list[_TwiceGiven] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, list[str | int]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, [*path, i]) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if (
                    isinstance(key, yaml.ScalarNode)
                    and key.tag != "tag:yaml.org,2002:merge"
                ):
                    line = key.start_mark.line + 1
                    if key.value in lines:
                        found.append(
                            _TwiceGiven([*path, key.value], lines[key.value], line)
                        )
                    else:
                        lines[key.value] = line
                    stack.append((value, [*path, key.value]))
                else:
                    stack.append((value, path))
    return sorted(found, key=lambda twice: twice.second_line)


class _Composed:
    """A rule file's document and the keys it gives twice."""

    def __init__(self, data: Any, twice: list[_TwiceGiven]) -> None:  # noqa: ANN401
        self.data = data
        self.twice = twice


def _load_yaml(text: str) -> _Composed:
    """``yaml.safe_load`` that refuses a document whose aliases blow it up,
    and finds the keys given twice in one mapping."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return _Composed(None, [])
        written = _written_size(root)
        budget = max(ALIAS_EXPANSION_FACTOR * written, ALIAS_EXPANSION_FLOOR)
        if not _expanded_size_within(root, budget):
            raise _AliasBomb(written, budget)
        # Before constructing: that merges `<<: *base` into the mapping's own
        # keys, where overriding a merged key is allowed, not a repeat.
        twice = _keys_given_twice(root)
        return _Composed(loader.construct_document(root), twice)
    finally:
        loader.dispose()


def _twice_problem(path: Path, data: Any, twice: _TwiceGiven) -> RuleProblem:  # noqa: ANN401
    message = f"given twice (lines {twice.first_line} and {twice.second_line})"
    keys = twice.path
    if len(keys) >= 3 and keys[0] == "rules" and isinstance(keys[1], int):
        index = keys[1]
        ident = "?"
        entries = data.get("rules") if isinstance(data, dict) else None
        if isinstance(entries, list) and index < len(entries):
            entry = entries[index]
            if isinstance(entry, dict) and entry.get("id") is not None:
                ident = str(entry["id"])
        field_name = ".".join(str(k) for k in keys[2:])
        return RuleProblem(path, f"#{index} ({ident})", field_name, message)
    return RuleProblem(path, None, ".".join(str(k) for k in keys), message)


def _unreadable(path: Path, exc: OSError) -> str:
    """Why a listed rule file cannot be read, in words: not the YAML reader's
    complaint, since nothing was parsed."""
    if path.is_dir():
        return "is a directory, not a rule file"
    if path.is_symlink() and not path.exists():
        return (
            f"cannot be read: a symbolic link to {path.readlink()}, "
            "which does not exist"
        )
    return f"cannot be read: {exc.strerror or exc}"


def _compose(path: Path) -> _Composed | str:
    """A rule file's document, or why it cannot be read or is not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return _unreadable(path, exc)
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start]:#04x})"
    try:
        return _load_yaml(text)
    except _AliasBomb as exc:
        return str(exc)
    except RecursionError:
        return "not valid YAML: nested too deeply to read"
    except yaml.YAMLError as exc:
        return "not valid YAML: " + " ".join(str(exc).split())


def _read_file(path: Path) -> tuple[list[tuple[int, Rule]], list[RuleProblem]]:
    composed = _compose(path)
    if isinstance(composed, str):
        return [], [RuleProblem(path, None, None, composed)]
    data = composed.data
    twice = [_twice_problem(path, data, given) for given in composed.twice]
    if not isinstance(data, dict) or "rules" not in data:
        got = type(data).__name__ if data is not None else "an empty file"
        message = f"expected a mapping with a 'rules' list, got {got}"
        return [], [*twice, RuleProblem(path, None, None, message)]
    try:
        parsed = RuleFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            problem
            for err in exc.errors(include_url=False)
            for problem in _problems(path, data, err)
        ]
        return _valid_rules(data), [*twice, *problems]
    return list(enumerate(parsed.rules)), twice


def _valid_rules(data: dict[str, Any]) -> list[tuple[int, Rule]]:
    """The rules of a file that has problems which are themselves valid.

    Keeps duplicate-id checking meaningful across files with some bad rules.
    """
    entries = data.get("rules")
    if not isinstance(entries, list):
        return []
    valid = []
    for index, entry in enumerate(entries):
        try:
            valid.append((index, Rule.model_validate(entry)))
        except ValidationError:
            continue
    return valid


def _problems(path: Path, data: dict[str, Any], err: Any) -> list[RuleProblem]:  # noqa: ANN401
    """The problems one pydantic error stands for: each field a rule's
    model-level check named (:class:`FieldErrors`), else the error itself."""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldErrors):
        return [_problem(path, data, err, each) for each in cause.errors]
    return [_problem(path, data, err, cause)]


def _problem(
    path: Path,
    data: dict[str, Any],
    err: Any,  # noqa: ANN401
    cause: object,
) -> RuleProblem:
    loc = list(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if isinstance(cause, FieldError):
        loc.extend(cause.field.split("."))
        message = str(cause)
    received = err.get("input")
    if err["type"] not in ("value_error", "missing") and not isinstance(
        received, dict | list
    ):
        message += f" (got {received!r})"
    if err["type"] == "missing":
        message = "required field is missing"
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int):
        field_name = _field_path(loc) or None
        return RuleProblem(path, None, field_name, message)
    index = loc[1]
    entries = data.get("rules")
    ident = "?"
    if isinstance(entries, list) and index < len(entries):
        entry = entries[index]
        if isinstance(entry, dict) and entry.get("id") is not None:
            ident = str(entry["id"])
    field_name = _field_path(loc[2:]) or None
    return RuleProblem(path, f"#{index} ({ident})", field_name, message)


def _field_path(loc: list[Any]) -> str:
    """Pydantic's error location as the path a rule author would write.

    Drops the union tags pydantic inserts: a condition ``{above: x}`` is
    located as ``when.above.above``, shown as ``when.above``.
    """
    parts: list[str] = []
    for part in loc:
        text = str(part)
        if parts and parts[-1] == text:
            continue
        parts.append(text)
    return ".".join(parts)
