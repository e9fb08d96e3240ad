"""Dashboard fixtures: a logged-in Django test client, and the API tier's stand-in worker
(``Engine``) that drives runs through the real services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
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


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user("operator", password="pw-operator-123")


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
