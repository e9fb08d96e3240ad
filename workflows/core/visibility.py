"""List filters: the query language of ``GET /api/workflows?query=...`` and
``client.list_workflows(query=...)``, Temporal's list filter syntax over the runs' own
fields. Pure: text in, an expression out (``workflows.selectors`` turns it into SQL).

    WorkflowType = 'charge' AND ExecutionStatus = 'Running'
    (WorkflowId STARTS_WITH 'order-' OR TaskQueue IN ('a', 'b')) AND StartTime > '2026-12-01'
    CloseTime IS NULL

Fields (Temporal's names, or ours): ``WorkflowId`` (``workflow_id``), ``WorkflowType``
(``workflow_type``), ``RunId`` (``run_id``, a UUID), ``TaskQueue`` (``task_queue``),
``ExecutionStatus`` (``status``: ``Running``, ``Completed``, ``Failed``, ``Canceled``,
``Terminated``, ``TimedOut``, ``ContinuedAsNew``, or our lower-case names), ``StartTime``
(``created_at``) and ``CloseTime`` (``closed_at``), ISO 8601 times (a date alone is its
midnight, UTC unless the text gives an offset). Operators: ``= != > >= < <=``, ``IN (...)``,
``NOT IN (...)``, ``BETWEEN x AND y``, ``STARTS_WITH``, ``IS NULL``, ``IS NOT NULL``;
``AND`` binds tighter than ``OR``; parentheses group. Keywords are case-insensitive; strings
are quoted with ``'`` or ``"`` (a quote doubled, or escaped with a backslash, stands for
itself).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .state import Status

MAX_QUERY_CHARS = 2000
MAX_TERMS = 64
MAX_DEPTH = 16  # nested parentheses


class QueryError(ValueError):
    """A query that cannot be parsed: ``position`` is the character offset of the trouble."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.position = position


@dataclass(frozen=True)
class Compare:
    field: str  # our column name
    op: str  # one of = != > >= < <=
    value: Any


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class StartsWith:
    field: str
    prefix: str


@dataclass(frozen=True)
class IsNull:
    field: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    terms: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Expr, ...]


Expr = Compare | In | StartsWith | IsNull | And | Or

TEXT, TIME, STATUS, UUID = "text", "time", "status", "uuid"
FIELDS: dict[str, tuple[str, str]] = {  # name in a query -> (column, kind)
    "WorkflowId": ("workflow_id", TEXT),
    "WorkflowType": ("workflow_type", TEXT),
    "RunId": ("run_id", UUID),
    "TaskQueue": ("task_queue", TEXT),
    "ExecutionStatus": ("status", STATUS),
    "StartTime": ("created_at", TIME),
    "CloseTime": ("closed_at", TIME),
}
FIELDS.update({column: (column, kind) for column, kind in list(FIELDS.values())})
STATUS_NAMES = {s.value.replace("_", ""): s.value for s in Status}  # "timedout" -> "timed_out"

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>!=|<>|>=|<=|=|>|<)
  | (?P<punct>[(),])
  | (?P<word>`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    at: int

    def keyword(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    at = 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None:
            raise QueryError(f"unexpected {text[at]!r}", at)
        kind = m.lastgroup or ""
        if kind != "space":
            out.append(_Tok(kind, m.group(), at))
        at = m.end()
    return out


def _unquote(tok: _Tok) -> str:
    quote, body = tok.text[0], tok.text[1:-1]
    return re.sub(r"\\(.)", r"\1", body.replace(quote * 2, quote))


def parse(text: str) -> Expr:
    """The expression ``text`` says; ``QueryError`` if it says none."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"a query is at most {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS)
    parser = _Parser(text, _tokens(text))
    if not parser.toks:
        raise QueryError("the query is empty", 0)
    expr = parser.or_expr()
    if parser.i < len(parser.toks):
        tok = parser.toks[parser.i]
        if tok.keyword("ORDER"):
            raise QueryError("ORDER BY is not supported: runs are listed newest first", tok.at)
        raise QueryError(f"expected AND, OR or the end, found {tok.text!r}", tok.at)
    return expr


class _Parser:
    def __init__(self, text: str, toks: list[_Tok]) -> None:
        self.text = text
        self.toks = toks
        self.i = 0
        self.terms = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"expected {what}, found the end", len(self.text))
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take(repr(text))
        if tok.text.upper() != text:
            raise QueryError(f"expected {text!r}, found {tok.text!r}", tok.at)

    def or_expr(self) -> Expr:
        terms = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.keyword("OR"):
            self.i += 1
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def and_expr(self) -> Expr:
        terms = [self.primary()]
        while (tok := self.peek()) is not None and tok.keyword("AND"):
            self.i += 1
            terms.append(self.primary())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def primary(self) -> Expr:
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"parentheses nest at most {MAX_DEPTH} deep", tok.at)
            self.i += 1
            expr = self.or_expr()
            self.expect(")")
            self.depth -= 1
            return expr
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(f"a query has at most {MAX_TERMS} conditions",
                             tok.at if tok else len(self.text))
        return self.condition()

    def condition(self) -> Expr:
        name = self.take("a field")
        if name.kind != "word" or name.keyword("AND", "OR", "NOT", "IN", "IS", "BETWEEN"):
            raise QueryError(f"expected a field, found {name.text!r}", name.at)
        label = name.text.strip("`")
        if label not in FIELDS:
            raise QueryError(f"unknown field {label!r}; the fields are "
                             f"{', '.join(k for k in FIELDS if k[0].isupper())}", name.at)
        column, kind = FIELDS[label]
        tok = self.take("an operator")
        if tok.kind == "op":
            op = "!=" if tok.text == "<>" else tok.text
            if kind in (STATUS, UUID) and op not in ("=", "!="):
                raise QueryError(f"{label} takes = != IN and NOT IN", tok.at)
            return Compare(column, op, self.value(kind, label))
        if tok.keyword("IS"):
            negated = self._word("NOT")
            self.expect("NULL")
            return IsNull(column, negated)
        if tok.keyword("NOT"):
            self.expect("IN")
            return In(column, self.values(kind, label), negated=True)
        if tok.keyword("IN"):
            return In(column, self.values(kind, label))
        if tok.keyword("BETWEEN"):
            low = self.value(kind, label)
            self.expect("AND")
            high = self.value(kind, label)
            return And((Compare(column, ">=", low), Compare(column, "<=", high)))
        if tok.keyword("STARTS_WITH"):
            if kind != TEXT:
                raise QueryError(f"STARTS_WITH takes a text field, not {label}", tok.at)
            prefix = self.value(kind, label)
            return StartsWith(column, str(prefix))
        raise QueryError(f"expected an operator after {label}, found {tok.text!r}", tok.at)

    def _word(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.keyword(word):
            self.i += 1
            return True
        return False

    def values(self, kind: str, label: str) -> tuple[Any, ...]:
        self.expect("(")
        out = [self.value(kind, label)]
        while (tok := self.peek()) is not None and tok.text == ",":
            self.i += 1
            out.append(self.value(kind, label))
        self.expect(")")
        return tuple(out)

    def value(self, kind: str, label: str) -> Any:
        tok = self.take("a value")
        if tok.kind == "number" and kind == TEXT:
            return tok.text
        if tok.kind != "string":
            raise QueryError(f"expected a quoted value for {label}, found {tok.text!r}", tok.at)
        text = _unquote(tok)
        if kind == STATUS:
            status = STATUS_NAMES.get(text.replace("_", "").lower())
            if status is None:
                raise QueryError(f"unknown status {text!r}; the statuses are "
                                 f"{', '.join(s.value for s in Status)}", tok.at)
            return status
        if kind == UUID:
            try:
                return str(uuid.UUID(text))
            except ValueError:
                raise QueryError(f"{label} takes a run id (a UUID), not {text!r}",
                                 tok.at) from None
        if kind == TIME:
            try:
                at = datetime.fromisoformat(text)
            except ValueError:
                raise QueryError(f"{label} takes an ISO 8601 time, not {text!r}",
                                 tok.at) from None
            return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return text
