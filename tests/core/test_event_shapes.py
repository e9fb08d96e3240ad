"""The attribute shapes the protocol documents are the attributes the core writes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from sdk.protocol.events import ATTRIBUTE_SHAPES
from workflows.core.events import EventType

from .strategies import Driver, runs


def test_every_event_type_has_a_shape() -> None:
    assert set(ATTRIBUTE_SHAPES) == set(EventType)


@given(runs())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decided_events_carry_the_keys_of_their_shape(driver: Driver) -> None:
    for event in driver.events:
        shape = ATTRIBUTE_SHAPES[event.event_type].__annotations__
        optional = {key for key, annotation in shape.items()
                    if str(getattr(annotation, "__forward_arg__", annotation)).startswith(
                        "NotRequired[")}
        assert set(shape) - optional <= set(event.attributes) <= set(shape), event.event_type
