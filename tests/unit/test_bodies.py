"""The nesting depth that bodies are refused beyond, against its definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from web.bodies import depth

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)
# Batches of readings: lists of objects, mostly flat (the fast path), sometimes not.
batches = st.lists(st.dictionaries(st.text(max_size=3), scalars | json_values, max_size=4))


def nesting(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(child) for child in value), default=0)
    return 0


@given(json_values | batches)
def test_depth_is_how_deeply_arrays_and_objects_nest(value: object) -> None:
    assert depth(value) == nesting(value)


def test_a_batch_of_flat_readings_is_two_deep_and_one_nested_value_deepens_it() -> None:
    flat = [{"meterId": "M1", "voltage": 230.0}, {"vehicleId": "V1", "soc": 50.0}]
    assert depth(flat) == 2
    assert depth([*flat, {"meterId": {"nested": [1]}}]) == 4
    assert depth([]) == 1
    assert depth([{}]) == 2
