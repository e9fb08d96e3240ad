"""The run page shows payloads a codec encoded as such, not as base64."""

from __future__ import annotations

import pytest
from django.test import Client

from sdk._converter import PayloadConverter
from tests.api.conftest import Engine
from tests.sdk.test_converter import XorCodec
from workflows.dashboard.views import shown

from .test_views import start, text

pytestmark = pytest.mark.django_db

CONV = PayloadConverter(XorCodec())


def test_encoded_payloads_are_named_wherever_they_nest() -> None:
    encoded = CONV.encode_sync({"card": "4242"})
    assert shown(encoded).startswith("<encoded payload, about ")
    nested = shown({"failure": {"details": encoded, "message": "m"}, "xs": [encoded, 1]})
    assert nested["failure"]["message"] == "m" and nested["xs"][1] == 1
    assert nested["failure"]["details"] == nested["xs"][0] == shown(encoded)
    assert shown({"__sched_codec__": "x", "other": 1}) == {"__sched_codec__": "x", "other": 1}


def test_the_run_page_shows_encoded_input_and_result(operator: Client, engine: Engine) -> None:
    start("w", "order", input=CONV.encode_sync({"secret": "plaintext"}))
    engine.complete_workflow("w", CONV.encode_sync("done"))
    page = text(operator.get("/workflows/w"))
    assert "encoded payload, about" in page and "(PayloadCodec)" in page
    assert CONV.encode_sync("done")["__sched_codec__"] not in page
