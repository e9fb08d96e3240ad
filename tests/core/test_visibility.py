"""The list filter language (``workflows.core.visibility``): what a query means, and what it
refuses, with the place of the trouble."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.core import visibility as v
from workflows.core.visibility import And, Compare, In, IsNull, Or, QueryError, StartsWith


def test_temporal_names_and_ours_mean_the_same() -> None:
    assert v.parse("WorkflowType = 'charge' AND ExecutionStatus = 'Running'") == And((
        Compare("workflow_type", "=", "charge"), Compare("status", "=", "running")))
    assert v.parse("workflow_type = 'charge' and status = 'running'") == And((
        Compare("workflow_type", "=", "charge"), Compare("status", "=", "running")))


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    a, b, c = (Compare("workflow_id", "=", x) for x in "abc")
    assert v.parse("WorkflowId='a' OR WorkflowId='b' AND WorkflowId='c'") == Or((a, And((b, c))))
    assert v.parse("(WorkflowId='a' OR WorkflowId='b') AND WorkflowId='c'") == And((Or((a, b)),
                                                                                    c))


def test_every_operator() -> None:
    assert v.parse("TaskQueue IN ('a', \"b\")") == In("task_queue", ("a", "b"))
    assert v.parse("TaskQueue not in ('a')") == In("task_queue", ("a",), negated=True)
    assert v.parse("WorkflowId STARTS_WITH 'order-'") == StartsWith("workflow_id", "order-")
    assert v.parse("CloseTime IS NULL") == IsNull("closed_at")
    assert v.parse("CloseTime IS NOT NULL") == IsNull("closed_at", negated=True)
    assert v.parse("WorkflowId <> 'x'") == Compare("workflow_id", "!=", "x")
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    assert v.parse("StartTime BETWEEN '2026-12-01' AND '2026-12-02T00:00:00Z'") == And((
        Compare("created_at", ">=", midnight),
        Compare("created_at", "<=", midnight + timedelta(days=1))))
    assert v.parse("StartTime > '2026-12-01T10:00:00+02:00'") == Compare(
        "created_at", ">", datetime(2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=2))))


def test_statuses_by_either_name() -> None:
    for text, status in [("TimedOut", "timed_out"), ("timed_out", "timed_out"),
                         ("ContinuedAsNew", "continued_as_new"), ("Canceled", "canceled")]:
        assert v.parse(f"ExecutionStatus = '{text}'") == Compare("status", "=", status)


def test_quotes_inside_strings() -> None:
    assert v.parse("WorkflowId = 'it''s'") == Compare("workflow_id", "=", "it's")
    assert v.parse(r"WorkflowId = 'it\'s'") == Compare("workflow_id", "=", "it's")


@pytest.mark.parametrize(("query", "says", "at"), [
    ("", "empty", 1),
    ("Owner = 'x'", "unknown field 'Owner'", 1),
    ("WorkflowId = x", "expected a quoted value", 14),
    ("WorkflowId = 'x' AND", "found the end", 21),
    ("WorkflowId = 'x' ORDER BY StartTime", "ORDER BY is not supported", 18),
    ("ExecutionStatus = 'Sleeping'", "unknown status 'Sleeping'", 19),
    ("ExecutionStatus > 'Running'", "takes = != IN and NOT IN", 17),
    ("StartTime > 'yesterday'", "ISO 8601", 13),
    ("RunId = 'nope'", "a UUID", 9),
    ("StartTime STARTS_WITH '2026'", "STARTS_WITH takes a text field", 11),
    ("(WorkflowId = 'x'", "expected ')'", 18),
    ("WorkflowId = 'x' ; DROP TABLE", "unexpected ';'", 18),
    ("WorkflowId = 'x' WorkflowType = 'y'", "expected AND, OR or the end", 18),
])
def test_refusals_say_what_and_where(query: str, says: str, at: int) -> None:
    with pytest.raises(QueryError) as caught:
        v.parse(query)
    assert says in str(caught.value)
    assert f"(at character {at})" in str(caught.value)


def test_sizes_are_bounded() -> None:
    with pytest.raises(QueryError, match="at most 2000 characters"):
        v.parse("WorkflowId = '" + "x" * 2000 + "'")
    with pytest.raises(QueryError, match="at most 64 conditions"):
        v.parse(" OR ".join(["WorkflowId = 'x'"] * 65))
    with pytest.raises(QueryError, match="nest at most 16 deep"):
        v.parse("(" * 900 + "WorkflowId = 'x'" + ")" * 900)
    assert v.parse("(" * 16 + "WorkflowId = 'x'" + ")" * 16) == Compare("workflow_id", "=", "x")


# ---- property: a query means what its terms mean, evaluated on plain rows ------------------

ROW = st.fixed_dictionaries({"workflow_id": st.sampled_from(["a", "ab", "b"]),
                             "task_queue": st.sampled_from(["q", "r"]),
                             "status": st.sampled_from(["running", "completed", "failed"])})
TERMS = st.one_of(
    st.builds(lambda f, x: (f"{f} = '{x}'", lambda r: r[f] == x),
              st.sampled_from(["workflow_id", "task_queue"]), st.sampled_from(["a", "q", "b"])),
    st.builds(lambda x: (f"WorkflowId STARTS_WITH '{x}'", lambda r: r["workflow_id"]
                         .startswith(x)), st.sampled_from(["a", "b", ""])),
    st.builds(lambda xs: (f"ExecutionStatus IN ({', '.join(repr(x) for x in xs)})",
                          lambda r: r["status"] in xs),
              st.lists(st.sampled_from(["running", "failed"]), min_size=1, max_size=2)),
)


def _evaluate(expr: Any, row: dict[str, str]) -> bool:
    match expr:
        case And(terms):
            return all(_evaluate(t, row) for t in terms)
        case Or(terms):
            return any(_evaluate(t, row) for t in terms)
        case Compare(field, "=", value):
            return bool(row[field] == value)
        case In(field, values, negated):
            return (row[field] in values) != negated
        case StartsWith(field, prefix):
            return row[field].startswith(prefix)
    raise AssertionError(expr)


@given(st.lists(st.lists(TERMS, min_size=1, max_size=3), min_size=1, max_size=3), ROW)
def test_a_disjunction_of_conjunctions_means_what_it_says(
        groups: list[list[tuple[str, Any]]], row: dict[str, str]) -> None:
    text = " OR ".join("(" + " AND ".join(q for q, _ in group) + ")" for group in groups)
    expected = any(all(check(row) for _, check in group) for group in groups)
    assert _evaluate(v.parse(text), row) == expected


def test_the_queries_in_docs_sdk_md_parse() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    section = text[text.index("A list filter, as a Temporal user writes it"):]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    calls = re.findall(r"query=((?:\"[^\"]*\"\s*)+)\)", block.group(1))
    assert len(calls) == 3
    for call in calls:
        v.parse("".join(re.findall(r"\"([^\"]*)\"", call)))
