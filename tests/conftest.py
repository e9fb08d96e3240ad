"""Fixtures shared by every test tier, and the tiers themselves. Keep this small:
tier-specific fixtures live beside their tests.

Each test is marked with its tier, the folder it lives in (``TIERS``): ``core`` (the pure
core, no database), ``sdk`` (the SDK, no engine), ``services`` and ``api`` (a real database,
no processes), ``dashboard``, ``observability`` and ``reliability``; ``e2e``, ``chaos`` and
``fuzz`` are marked by their own folders. ``make test-fast`` runs core, sdk, services and api.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from workflows.models import ApiToken, TokenScope

TIERS = ("core", "sdk", "services", "api", "dashboard", "observability", "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(item.config.rootpath).parts
        if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS:
            item.add_marker(parts[1])


@pytest.fixture
def api_token(db: None) -> str:
    """A raw ``api``-scope token."""
    _, raw = ApiToken.issue("test", scope=TokenScope.API)
    return raw


@pytest.fixture
def api_client(api_token: str) -> APIClient:
    """A DRF test client that sends ``Authorization: Bearer <api_token>``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    return client
