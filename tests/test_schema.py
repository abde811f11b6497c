"""The settings schema: ranges, normalization, validation."""

import math

import pytest
import torch

from mixscale import schema
from mixscale.errors import SettingsError


def test_every_row_is_well_formed():
    for p in schema.PARAMS:
        assert p.min < p.max and p.min <= p.default <= p.max, p.name
        assert p.scale in schema.SCALES and p.group in schema.GROUPS and p.chain in schema.CHAINS
        assert p.scale == "linear" or p.min > 0, f"{p.name}: a log scale needs a positive range"
        assert p.reason
    for chain in schema.CHAINS:
        assert len(set(schema.names(chain))) == len(schema.names(chain))


def test_master_chain_order_and_groups():
    names = schema.names("master")
    order = ["input.gain_db", "eq.low_shelf.freq_hz", "comp.threshold_db", "width.amount", "limiter.ceiling_dbtp"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)
    assert set(schema.group_slices("master")) == {"gain", "eq", "dynamics", "width", "limiter"}
    assert set(schema.group_slices("stem")) == {"gain", "pan", "eq", "dynamics"}


def test_peak_bands_own_disjoint_frequency_ranges():
    for chain in schema.CHAINS:
        ranges = sorted((schema.param(chain, f"eq.peak{i}.freq_hz").min, schema.param(chain, f"eq.peak{i}.freq_hz").max)
                        for i in (1, 2, 3))
        for (_, hi), (lo, _) in zip(ranges, ranges[1:]):
            assert hi <= lo


def test_normalization_round_trips_and_log_midpoint_is_geometric():
    for p in schema.PARAMS:
        for u in (0.0, 0.25, 0.5, 1.0):
            assert math.isclose(schema.normalize(p, schema.denormalize(p, u)), u, abs_tol=1e-12)
        assert math.isclose(schema.normalize(p, p.min), 0.0, abs_tol=1e-12)
        assert math.isclose(schema.normalize(p, p.max), 1.0, abs_tol=1e-12)
    ratio = schema.param("master", "comp.ratio")
    assert math.isclose(schema.denormalize(ratio, 0.5), math.sqrt(ratio.min * ratio.max))
    u = torch.rand(4, len(schema.params("master")), dtype=torch.float64)
    back = torch.stack(schema.to_normalized(schema.from_normalized(u, "master"), "master"), dim=-1)
    assert torch.allclose(back, u)


def test_validate_accepts_nested_and_fills_defaults():
    s = schema.validate({"eq": {"peak2": {"gain_db": 3}}, "comp.ratio": 2.5}, "master")
    assert s["eq.peak2.gain_db"] == 3.0 and s["comp.ratio"] == 2.5
    assert s["width.amount"] == schema.param("master", "width.amount").default
    assert set(s) == set(schema.names("master"))


@pytest.mark.parametrize("settings,pattern", [
    ({"eq.peak7.gain_db": 1.0}, r"unknown master setting 'eq.peak7.gain_db'"),
    ({"comp.ratio": 50}, r"comp.ratio = 50 is out of range; allowed range \[1, 20\] :1"),
    ({"eq.peak2.freq_hz": 100}, r"eq.peak2.freq_hz = 100 is out of range; allowed range \[500, 2500\] Hz"),
    ({"limiter.ceiling_dbtp": "loud"}, r"limiter.ceiling_dbtp = 'loud' is not a number"),
    ({"width.amount": float("nan")}, r"width.amount = nan is out of range"),
])
def test_validate_names_key_value_and_range(settings, pattern):
    with pytest.raises(SettingsError, match=pattern):
        schema.validate(settings, "master", source="s.json")


def test_schema_table_has_exactly_the_published_fields():
    for row in schema.schema_table():
        assert tuple(row) == schema.FIELDS
