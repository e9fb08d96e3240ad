"""Leadership rows and fencing a singleton loop's writes by its term."""

from __future__ import annotations

from dispatch.models import Leadership

__all__ = ["Leadership", "NotLeader", "check_term"]


class NotLeader(Exception):
    """This process's leadership term is over: another leader has taken the lock."""


def check_term(name: str, term: int) -> None:
    """Inside a transaction: hold the leadership row (a new leader's term bump waits for us)
    and check that ``term`` is still current."""
    if not Leadership.objects.select_for_update(no_key=True).filter(name=name,
                                                                   term=term).exists():
        raise NotLeader(f"{name}: term {term} is over")
