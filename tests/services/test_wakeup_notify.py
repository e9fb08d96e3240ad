"""A loop led by another engine process is woken through PostgreSQL: ``wakeup.on_commit``
issues ``pg_notify`` in the transaction (held with a transition's writes), and the listening
connection hears it once the transaction commits, not before."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from dispatch import wakeup
from schedproject import sql
from schedproject.transactions import atomic

pytestmark = pytest.mark.django_db(transaction=True)


def _listener() -> psycopg.Connection[tuple[object, ...]]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    listener = psycopg.connect(**params, autocommit=True)
    listener.execute(f"LISTEN {wakeup.PG_CHANNEL}")
    return listener


def _heard(listener: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=1, stop_after=1)]


def test_another_process_hears_the_wake_up_when_the_transition_commits() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("wake-ups cross processes through PostgreSQL only")
    listener = _listener()
    try:
        with atomic(), sql.deferring():
            wakeup.on_commit("timers-elsewhere")
            # Not yet sent (held with the writes), and not delivered before the commit.
            assert _heard(listener) == []
        assert _heard(listener) == ["timers-elsewhere"]
    finally:
        listener.close()
