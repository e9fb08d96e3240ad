"""Dashboard fixtures: a logged-in Django test client, and the API tier's stand-in worker
(``Engine``) that drives runs through the real services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.api.conftest import Engine
from workflows import selectors


@pytest.fixture(autouse=True)
def _fresh_status_counts() -> Iterator[None]:
    selectors._status_counts_cache.clear()
    yield
    selectors._status_counts_cache.clear()


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """PBKDF2 costs most of a second per password on a small machine; not what these test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


OPERATOR_PERMISSIONS = ("workflows.view_execution", "workflows.start_workflow",
                        "workflows.signal_workflow", "workflows.cancel_workflow",
                        "workflows.terminate_workflow", "dispatch.view_workersession")


def user_with(username: str, *permissions: str) -> User:
    """A user holding ``permissions`` (``app_label.codename``), nothing else."""
    user = User.objects.create_user(username, password=f"pw-{username}-123")
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return user


@pytest.fixture
def user(db: None) -> User:
    """An operator: may view runs and workers and use every action (by permissions, not
    staff status)."""
    return user_with("operator", *OPERATOR_PERMISSIONS)


@pytest.fixture
def operator(user: User) -> Client:
    """A client logged in as an operator, with CSRF checks on, as a browser has them (the
    forms' tokens are read from the pages with ``csrf``)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def engine() -> Engine:
    return Engine()
