"""Fixtures shared by every test tier. Keep this small: tier-specific ones live beside them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from workflows.models import ApiToken, TokenScope


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
