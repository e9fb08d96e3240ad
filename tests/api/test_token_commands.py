"""createtoken / revoketoken / listtokens."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from workflows.models import ApiToken

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_createtoken_prints_a_working_token_as_the_last_line() -> None:
    out = run("createtoken", "ci")
    raw = out.rstrip("\n").splitlines()[-1]
    assert raw == raw.strip() and " " not in raw
    assert bearer(raw).get("/api/workflows").status_code == 200
    token = ApiToken.objects.get()
    assert (token.name, token.scope) == ("ci", "admin")
    assert raw not in (token.digest, token.prefix) and token.prefix == raw[:12]


@pytest.mark.parametrize(("scope", "status"), [("api", 200), ("admin", 200), ("worker", 403)])
def test_createtoken_scope(scope: str, status: int) -> None:
    raw = run("createtoken", "t", "--scope", scope).splitlines()[-1]
    assert ApiToken.objects.get().scope == scope
    assert bearer(raw).get("/api/workflows").status_code == status


def test_createtoken_refuses_an_unknown_scope() -> None:
    with pytest.raises(CommandError):
        run("createtoken", "t", "--scope", "root")


@pytest.mark.parametrize("by", ["prefix", "name"])
def test_revoketoken_by_prefix_or_name(by: str) -> None:
    raw = run("createtoken", "deploy").splitlines()[-1]
    keep = run("createtoken", "other").splitlines()[-1]
    run("revoketoken", raw[:12] if by == "prefix" else "deploy")
    assert bearer(raw).get("/api/workflows").status_code == 401
    assert bearer(keep).get("/api/workflows").status_code == 200


def test_revoketoken_refuses_ambiguous_names_unless_all() -> None:
    raws = [run("createtoken", "dup").splitlines()[-1] for _ in range(2)]
    with pytest.raises(CommandError, match="2 live tokens"):
        run("revoketoken", "dup")
    run("revoketoken", "dup", "--all")
    assert all(bearer(raw).get("/api/workflows").status_code == 401 for raw in raws)


def test_revoketoken_unknown_is_an_error() -> None:
    with pytest.raises(CommandError, match="no live token"):
        run("revoketoken", "nope")


def test_listtokens_shows_everything_but_the_raw_token() -> None:
    raw = run("createtoken", "alpha", "--scope", "api").splitlines()[-1]
    bearer(raw).get("/api/workflows")
    run("createtoken", "beta", "--scope", "worker")
    run("revoketoken", "beta")
    out = run("listtokens")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "PREFIX", "SCOPE", "CREATED", "LAST", "USED", "REVOKED"]
    rows = {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in lines[1:])}
    _name, prefix, scope, created, last_used, revoked = rows["alpha"]
    assert (prefix, scope, revoked) == (raw[:12], "api", "-")
    assert created != "-" and last_used != "-"
    assert rows["beta"][2] == "worker" and rows["beta"][4] == "-" and rows["beta"][5] != "-"
    assert raw not in out
