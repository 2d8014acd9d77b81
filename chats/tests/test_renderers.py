"""messaging_app.renderers: orjson writes the same bytes as DRF's JSONRenderer for what the API returns."""
import datetime
import decimal
import uuid

from django.utils.translation import gettext_lazy
from hypothesis import given, settings, strategies as st
from rest_framework.renderers import JSONRenderer as DRFRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from messaging_app.renderers import JSONRenderer

ours, drf = JSONRenderer(), DRFRenderer()

# Everything a response holds: text of any code point (separators, controls, astral, lone
# surrogates), integers of any size, nested lists and objects.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.characters(codec=None)),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def outcome(renderer, value):
    """The bytes, or the error (DRF cannot encode a lone surrogate either)."""
    try:
        return renderer.render(value)
    except ValueError as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_same_bytes_as_drf(value):
    assert outcome(ours, value) == outcome(drf, value)


def test_types_drf_encodes_itself_come_out_the_same():
    value = ReturnDict({
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 1, 2),
        "id": uuid.UUID("cf42bef4-f746-41e5-b30c-4c2bcfb974da"),
        "detail": gettext_lazy("This field is required."),
        "amount": decimal.Decimal("1.50"),
        "pair": (1, 2),
        "rows": ReturnList([{"a": "\u2028\u2029"}], serializer=None),
        "huge": 2**70,
    }, serializer=None)
    assert ours.render(value) == drf.render(value)


def test_indented_and_empty_output_are_drfs():
    assert ours.render({"a": [1]}, "application/json; indent=2") == drf.render({"a": [1]}, "application/json; indent=2")
    assert ours.render(None) == drf.render(None) == b""
