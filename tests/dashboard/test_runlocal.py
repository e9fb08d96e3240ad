"""``runlocal`` creates the dashboard login once and prints it beside the API token."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from workflows.local import local_admin

pytestmark = pytest.mark.django_db


def test_local_admin_is_created_once(tmp_path: Path) -> None:
    with override_settings(SCHED=dataclasses.replace(settings.SCHED, data_dir=tmp_path)):
        login = local_admin()
        user, password = login.split(" / ")
        assert user == "admin"
        path = tmp_path / "admin_password"
        assert path.read_text().strip() == password
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        admin = User.objects.get(username="admin")
        assert admin.is_superuser and admin.check_password(password)
        assert local_admin() == login  # the same on the next run
        client = Client()
        assert client.login(username="admin", password=password)
        admin.set_password("changed-by-the-operator")
        admin.save()
        assert "changepassword" in local_admin()  # left alone, and said so
        assert User.objects.get(username="admin").check_password("changed-by-the-operator")
