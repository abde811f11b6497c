"""A/B traffic split: stable hashing, stickiness, split proportions, validation, client ids."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter

import pytest

from mixscale.product.ab import (CLIENT_COOKIE, ABConfig, ClientIdError, SplitError, assign_version, client_cookie,
                                 client_point, resolve_client, validate_split)

N_CLIENTS = 2000
TOLERANCE = 0.03
IDS = [f"client-{i:05d}" for i in range(N_CLIENTS)]


def shares(split, ids=IDS, salt=""):
    counts = Counter(assign_version(c, split, salt) for c in ids)
    return {v: counts.get(v, 0) / len(ids) for v in split}


@pytest.mark.parametrize("split", [{"A": 0.5, "B": 0.5}, {"A": 0.9, "B": 0.1}, {"A": 1, "B": 2, "C": 7}])
def test_split_within_tolerance(split):
    got = shares(split)
    total = sum(split.values())
    for v, w in split.items():
        assert abs(got[v] - w / total) <= TOLERANCE, (v, got)


def test_sticky_within_and_across_processes():
    split = {"A": 0.5, "B": 0.5}
    here = [assign_version(c, split) for c in IDS[:200]]
    assert here == [assign_version(c, split) for c in IDS[:200]]
    # A fresh interpreter with a different string-hash seed assigns the same way (sha256, not hash()).
    code = ("from mixscale.product.ab import assign_version\n"
            f"print(''.join(assign_version(c, {split!r}) for c in {IDS[:200]!r}))")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "".join(here)


def test_points_are_uniform_and_stable():
    pts = [client_point(c) for c in IDS]
    assert all(0.0 <= p < 1.0 for p in pts)
    # Ten equal bins each hold 10% +- 3% of 2000 ids.
    bins = Counter(min(int(p * 10), 9) for p in pts)
    assert all(abs(bins[b] / N_CLIENTS - 0.1) <= TOLERANCE for b in range(10)), bins
    # The documented hash: first 8 bytes of sha256(salt NUL id), big-endian, over 2**64.
    import hashlib

    d = hashlib.sha256(b"\0client-00000").digest()
    assert client_point("client-00000") == int.from_bytes(d[:8], "big") / 2.0**64


def test_moving_weight_moves_only_the_moved_clients():
    before = {c: assign_version(c, {"A": 0.5, "B": 0.5}) for c in IDS}
    after = {c: assign_version(c, {"A": 0.4, "B": 0.6}) for c in IDS}
    assert all(after[c] == "B" for c in IDS if before[c] == "B")
    moved = sum(before[c] != after[c] for c in IDS) / N_CLIENTS
    assert abs(moved - 0.1) <= TOLERANCE


def test_zero_weight_never_chosen_and_salt_reshuffles():
    assert set(shares({"A": 0.0, "B": 1.0, "C": 0.0}).items()) == {("A", 0.0), ("B", 1.0), ("C", 0.0)}
    plain = [assign_version(c, {"A": 1, "B": 1}) for c in IDS]
    salted = [assign_version(c, {"A": 1, "B": 1}, salt="exp-2") for c in IDS]
    agree = sum(a == b for a, b in zip(plain, salted)) / N_CLIENTS
    assert abs(agree - 0.5) <= 0.05  # independent assignments agree half the time


@pytest.mark.parametrize("split, needle", [
    ({}, "non-empty"),
    ({"A": -0.1}, "A: weight -0.1 is out of range"),
    ({"A": math.nan, "B": 1}, "A: weight nan"),
    ({"A": math.inf}, "out of range"),
    ({"A": True}, "not a number"),
    ({"A": "0.5"}, "not a number"),
    ({"A": 0, "B": 0.0}, "sum to 0"),
    ({"": 1}, "version name ''"),
    ({"bad name": 1}, "'bad name' is invalid"),
    ({"x" * 65: 1}, "is invalid"),
])
def test_bad_splits_raise_naming_the_problem(split, needle):
    with pytest.raises(SplitError, match="ab.split") as err:
        validate_split(split)
    assert needle in str(err.value)


def test_config_from_dict():
    cfg = ABConfig.from_dict({"split": {"v1": 3, "v2": 1}, "salt": "s"})
    assert cfg.split == {"v1": 3.0, "v2": 1.0} and cfg.assign("abc") == assign_version("abc", cfg.split, "s")
    assert ABConfig.from_dict(None).split is None and ABConfig().assign("abc") is None
    with pytest.raises(SplitError, match="unknown keys"):
        ABConfig.from_dict({"splt": {"A": 1}})
    with pytest.raises(SplitError, match="product.ab.split.B"):
        ABConfig.from_dict({"split": {"A": 1, "B": -1}}, source="product.ab")


def test_client_id_from_header_cookie_or_new():
    assert resolve_client({"x-client-id": "abc"}, {CLIENT_COOKIE: "zzz"}).id == "abc"  # header wins
    c = resolve_client({}, {CLIENT_COOKIE: "from-cookie"})
    assert (c.id, c.new, client_cookie(c)) == ("from-cookie", False, None)
    fresh = resolve_client({}, {})
    assert fresh.new and len(fresh.id) == 32 and resolve_client({}, {}).id != fresh.id
    kw = client_cookie(fresh)
    assert kw["key"] == CLIENT_COOKIE and kw["value"] == fresh.id and kw["max_age"] > 30 * 24 * 3600
    assert resolve_client({}, {CLIENT_COOKIE: "bad cookie;"}).new  # a broken cookie is replaced
    with pytest.raises(ClientIdError, match="X-Client-Id"):
        resolve_client({"X-Client-Id": "has space"}, {})
    with pytest.raises(ClientIdError):
        resolve_client({"X-Client-Id": "x" * 129}, {})


# ------------------------------------------------------------------ on the real service

@pytest.fixture(scope="module")
def ab_service(ray_session):
    from mixscale.testing.serve import ab_app_args, running_app

    args = ab_app_args()
    with running_app(args) as url:
        yield url, args["product"]["ab"]["split"]


@pytest.mark.slow
def test_service_serves_each_client_its_sticky_version(ab_service):
    import httpx

    from mixscale.testing.serve import wav_bytes

    url, split = ab_service
    clip = wav_bytes(0.5)
    clients = [f"svc-client-{i}" for i in range(12)]
    expected = {c: assign_version(c, split) for c in clients}
    assert set(expected.values()) == {"A", "B"}  # these ids exercise both versions

    def analyze(http, **headers):
        r = http.post("/v1/analyze", files={"file": ("clip.wav", clip, "audio/wav")}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == r.headers["X-Mixscale-Version"]
        return r

    with httpx.Client(base_url=url, timeout=60) as http:
        for c in clients:
            served = {analyze(http, **{"X-Client-Id": c}).headers["X-Mixscale-Version"] for _ in range(2)}
            assert served == {expected[c]}, c
        other = {"A": "B", "B": "A"}[expected[clients[0]]]
        pinned = analyze(http, **{"X-Client-Id": clients[0], "X-Mixscale-Version": other})
        assert pinned.headers["X-Mixscale-Version"] == other  # an explicit pin wins over the split
        bad = http.post("/v1/analyze", files={"file": ("clip.wav", clip)}, headers={"X-Client-Id": "a b"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "X-Client-Id"
    with httpx.Client(base_url=url, timeout=60) as browser:  # no id: the cookie carries a new one
        first = analyze(browser)
        cid = first.cookies.get("mixscale_client")
        assert cid and first.headers["X-Mixscale-Version"] == assign_version(cid, split)
        again = analyze(browser)
        assert "set-cookie" not in again.headers and again.headers["X-Mixscale-Version"] == assign_version(cid, split)
        page = browser.get("/")
        assert page.status_code == 200 and "mixscale" in page.text
