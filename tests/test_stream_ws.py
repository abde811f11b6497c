"""``/v1/stream``: real-time mastering over a WebSocket on the real Serve app (local Ray).

A tiny master version behind the real ingress with auth on, ``limits.max_inflight`` = 2 and
a SQLite request log; the client is the ``websockets`` sync client. The streamed master
equals the offline ``master_chain`` within ``mixscale.fx.stream.TOLERANCE``; open streams
hold in-flight slots (one too many is closed 1013) and are written to the request log.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixscale import SAMPLE_RATE, schema
from mixscale.fx.stream import TOLERANCE
from mixscale.testing.signals import music_like

API_KEY_ENV = "MIXSCALE_STREAM_TEST_KEY"
API_KEY = "stream-key-7d21"             # test-only; given to the ingress through its runtime_env
MAX_DURATION_S = 5.0
MAX_INFLIGHT = 2
# Compress by 4:1 from -30 dBFS, push 9 dB into a -1 dBTP ceiling, with an EQ boost.
SETTINGS = {"comp.threshold_db": -30.0, "comp.ratio": 4.0, "comp.attack_ms": 5.0, "limiter.gain_db": 9.0,
            "limiter.ceiling_dbtp": -1.0, "eq.peak2.gain_db": 3.0}


@pytest.fixture(scope="module")
def app(ray_session):
    """(ws base URL, http base URL, tiny checkpoint folder, request-log store path) of the running app."""
    from mixscale.testing.serve import SMALL, process_root, running_app, tiny_versions

    versions = tiny_versions(process_root(), ("A",))
    store = process_root() / "stream-requests.sqlite3"
    args = {**SMALL, "versions": versions, "default_version": "A",
            "ingress": {**SMALL["ingress"], "runtime_env": {"env_vars": {API_KEY_ENV: API_KEY}}},
            "limits": {"max_duration_s": MAX_DURATION_S, "request_timeout_s": 60, "max_inflight": MAX_INFLIGHT},
            "auth": {"api_key_envs": [API_KEY_ENV]},
            "product": {"feedback_store": str(store)}}
    with running_app(args, name="mixscale-stream-test") as url:
        yield url.replace("http://", "ws://"), url, versions[0]["master"], store


def _song(seconds: float, seed: int = 0) -> np.ndarray:
    return music_like(seconds, SAMPLE_RATE, seed=seed)[0].numpy().astype(np.float32)


def _frames(x: np.ndarray) -> bytes:
    """(2, N) -> interleaved little-endian float32."""
    return np.ascontiguousarray(x.T, dtype="<f4").tobytes()


def _unframe(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(-1, 2).T


def _connect(ws_url: str, query: str = "", key: str | None = API_KEY, client_id: str | None = None):
    from websockets.sync.client import connect

    headers = {"X-API-Key": key} if key else {}
    if client_id:
        headers["X-Client-Id"] = client_id
    return connect(f"{ws_url}/v1/stream{query}", additional_headers=headers, open_timeout=30,
                   max_size=None)


def _stream(ws, x: np.ndarray, blocks: list[int]) -> tuple[np.ndarray, dict | None, list[tuple[int, int]]]:
    """Send x (2, T) in blocks, then end. -> (output (2, T'), settings message if one came, [(in, out)] counts)."""
    out, counts, settings, sent = [], [], None, 0
    for size in blocks:
        ws.send(_frames(x[:, sent:sent + size]))
        sent += size
        while True:
            answer = ws.recv(timeout=60)
            if isinstance(answer, str):
                settings = json.loads(answer)
                continue
            out.append(_unframe(answer))
            counts.append((sent, sum(o.shape[1] for o in out)))
            break
    ws.send(json.dumps({"end": True}))
    out.append(_unframe(ws.recv(timeout=60)))
    done = json.loads(ws.recv(timeout=60))
    y = np.concatenate(out, axis=1)
    assert done == {"done": True, "samples": y.shape[1]}
    return y, settings, counts


def _random_blocks(total: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(1, 9000), total - sum(sizes))))
    return sizes


def _closed_with_error(ws, code: str, field: str | None = "any", close_code: int = 1008) -> dict:
    from websockets.exceptions import ConnectionClosed

    err = json.loads(ws.recv(timeout=30))["error"]
    assert err["code"] == code, err
    if field != "any":
        assert err["field"] == field, err
    assert len(err["message"]) > 10
    assert err["request_id"] == ws.response.headers["x-request-id"]
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=30)
    assert info.value.rcvd.code == close_code
    return err


def _open_stream(ws_url: str, deadline_s: float = 20.0, **kwargs):
    """A stream with given settings, once admitted (sockets of earlier tests may still hold slots):
    (socket, settings message)."""
    import time

    end = time.monotonic() + deadline_s
    while True:
        ws = _connect(ws_url, **kwargs)
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "settings": SETTINGS}))
        first = json.loads(ws.recv(timeout=30))
        if "settings" in first:
            return ws, first
        ws.close()
        assert first["error"]["code"] == "too_many_requests" and time.monotonic() < end, first
        time.sleep(0.2)


@pytest.mark.slow
def test_streamed_master_equals_the_offline_chain(app):
    from mixscale.fx.chain import master_chain

    ws_url, *_ = app
    x = _song(3.0)
    with _connect(ws_url) as ws:
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "settings": SETTINGS}))
        hello = json.loads(ws.recv(timeout=30))
        assert hello["model_version"] is None and set(hello["settings"]) == set(schema.names("master"))
        assert {k: hello["settings"][k] for k in SETTINGS} == SETTINGS
        latency = hello["latency_samples"]
        assert latency == 904                                   # 4 limiter passes of 226 at 44.1 kHz
        y, _, counts = _stream(ws, x, _random_blocks(x.shape[1], seed=1))
    assert all(n_out == max(0, n_in - latency) for n_in, n_out in counts)   # a fixed latency
    offline = master_chain(torch.from_numpy(x)[None], SAMPLE_RATE, SETTINGS)[0].numpy()
    assert y.shape == x.shape
    assert np.abs(y - offline).max() <= TOLERANCE
    assert np.abs(offline - x).max() > 0.1                       # the chain did work
    assert np.abs(y).max() <= 10 ** (-1.0 / 20) + 0.01           # under the ceiling


@pytest.mark.slow
def test_analyze_seconds_fixes_the_settings_like_v1_master(app):
    from mixscale.fx.chain import master_chain
    from mixscale.inference import Predictor, apply_intensity, master_audio

    ws_url, _, checkpoint, _ = app
    x = _song(3.0, seed=2)
    with _connect(ws_url, query=f"?api_key={API_KEY}", key=None) as ws:
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "analyze_seconds": 1.0, "target_lufs": -12.0,
                            "ceiling": -1.5, "intensity": 0.5}))
        y, hello, counts = _stream(ws, x, [4410] * 30)
    assert hello is not None and hello["model_version"] == "A"
    settings = hello["settings"]
    assert set(settings) == set(schema.names("master")) and settings["limiter.ceiling_dbtp"] == -1.5
    # Nothing comes back until the first second is in; then the fixed latency.
    assert [o for i, o in counts if i < SAMPLE_RATE] == [0] * 9
    assert all(o == i - hello["latency_samples"] for i, o in counts if i >= SAMPLE_RATE)
    head = torch.from_numpy(x[:, :SAMPLE_RATE])
    local = Predictor.load(checkpoint).analyze(head, SAMPLE_RATE).to_dict()["settings"]
    expected = master_audio(head, SAMPLE_RATE, apply_intensity(local, "master", 0.5), -12.0, -1.5)[1]
    for name in schema.names("master"):
        assert settings[name] == pytest.approx(expected[name], rel=1e-3, abs=1e-3), name
    assert y.shape == x.shape
    offline = master_chain(torch.from_numpy(x)[None], SAMPLE_RATE, settings)[0].numpy()
    assert np.abs(y - offline).max() <= TOLERANCE


@pytest.mark.slow
def test_bad_openings_auth_and_limits_close_1008_and_the_service_keeps_serving(app):
    import httpx

    ws_url, http_url, *_ = app
    cases = [
        ("{not json", "invalid_json", None),
        (json.dumps({"sample_rate": 48000, "settings": {}}), "out_of_range", "sample_rate"),
        (json.dumps({"sample_rate": SAMPLE_RATE, "settings": {"eq.peak9.gain_db": 1}}), "unknown_setting",
         "settings"),
        (json.dumps({"sample_rate": SAMPLE_RATE, "settings": {"comp.ratio": 50}}), "out_of_range", "settings"),
        (json.dumps({"sample_rate": SAMPLE_RATE, "tempo": 120}), "unknown_field", "tempo"),
        (json.dumps({"sample_rate": SAMPLE_RATE, "analyze_seconds": 60}), "out_of_range", "analyze_seconds"),
        (json.dumps({"sample_rate": SAMPLE_RATE, "analyze_seconds": 1, "intensity": 2}), "out_of_range",
         "intensity"),
        (json.dumps({"settings": {}}), "missing_field", "sample_rate"),
    ]
    for opening, code, field in cases:
        with _connect(ws_url) as ws:
            ws.send(opening)
            err = _closed_with_error(ws, code, field)
            assert code != "unknown_setting" or "eq.peak9" in err["message"]
    with _connect(ws_url, key=None) as ws:
        _closed_with_error(ws, "unauthorized")
    with _connect(ws_url, query="?api_key=wrong", key=None) as ws:
        _closed_with_error(ws, "unauthorized")
    with _connect(ws_url) as ws:                     # audio that is not whole frames, then too long
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "settings": {}}))
        ws.recv(timeout=30)
        ws.send(b"\0" * 12)
        _closed_with_error(ws, "invalid_audio", "audio")
    with _connect(ws_url) as ws:
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "settings": {}}))
        ws.recv(timeout=30)
        ws.send(_frames(np.zeros((2, int(SAMPLE_RATE * (MAX_DURATION_S + 1))), np.float32)))
        assert "max_duration_s" in _closed_with_error(ws, "too_long", "audio")["message"]
    assert httpx.get(f"{http_url}/healthz", timeout=30).json() == {"status": "ok"}
    with _connect(ws_url) as ws:                     # and streams on
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "settings": {}}))
        ws.recv(timeout=30)
        y, _, _ = _stream(ws, _song(0.5), [SAMPLE_RATE // 2])
        assert y.shape == (2, SAMPLE_RATE // 2)


@pytest.mark.slow
def test_streams_count_in_max_inflight_and_one_too_many_is_closed_1013(app):
    import time

    ws_url, *_ = app
    held = [_open_stream(ws_url)[0] for _ in range(MAX_INFLIGHT)]
    try:
        with _connect(ws_url) as ws:              # the limit is reached: refused, whatever it would send
            err = _closed_with_error(ws, "too_many_requests", None, close_code=1013)
            assert f"max_inflight = {MAX_INFLIGHT}" in err["message"]
            assert ws.response.headers["retry-after"] == "1"
        # An open stream keeps its slot while it streams.
        y, _, _ = _stream(held[0], _song(0.5), [SAMPLE_RATE // 4, SAMPLE_RATE // 4])
        assert y.shape == (2, SAMPLE_RATE // 2)
    finally:
        for ws in held:
            ws.close()
    # Closed streams give their slots back: two streams at once are admitted again.
    again, deadline = [], time.monotonic() + 20
    try:
        again = [_open_stream(ws_url, deadline_s=max(1.0, deadline - time.monotonic()))[0]
                 for _ in range(MAX_INFLIGHT)]
        assert len(again) == MAX_INFLIGHT
    finally:
        for ws in again:
            ws.close()


@pytest.mark.slow
def test_streams_are_written_to_the_request_log(app):
    from mixscale.product.feedback import open_store

    ws_url, _, _, store = app
    ws, given = _open_stream(ws_url, client_id="stream-client-1")
    with ws:
        _stream(ws, _song(0.5, seed=3), [SAMPLE_RATE // 2])
    assert given["request_id"] == ws.response.headers["x-request-id"]
    with _connect(ws_url, client_id="stream-client-2") as ws:
        ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "analyze_seconds": 0.5, "target_lufs": -12.0,
                            "ceiling": -1.5, "intensity": 0.5}))
        _, analyzed, _ = _stream(ws, _song(1.0, seed=4), [SAMPLE_RATE // 2, SAMPLE_RATE // 2])
    assert analyzed["model_version"] == "A"
    assert {k: analyzed[k] for k in ("target_lufs", "ceiling", "intensity")} == \
        {"target_lufs": -12.0, "ceiling": -1.5, "intensity": 0.5}
    # Logged before the settings message left: the rows are there once the client has it.
    rows = open_store(store, create=False).requests([given["request_id"], analyzed["request_id"]])
    row = rows[given["request_id"]]
    assert (row["endpoint"], row["version"], row["client_id"], row["params"]) == \
        ("/v1/stream", None, "stream-client-1", None)
    assert row["settings"] == given["settings"]
    row = rows[analyzed["request_id"]]
    assert (row["endpoint"], row["version"], row["client_id"]) == ("/v1/stream", "A", "stream-client-2")
    assert row["settings"] == analyzed["settings"]
    assert row["params"] == {"target_lufs": -12.0, "ceiling": -1.5, "intensity": 0.5}
    # A refused or failed stream is not logged: only streams that got settings are.
    with _connect(ws_url) as ws:
        ws.send(json.dumps({"sample_rate": 48000, "settings": {}}))
        err = _closed_with_error(ws, "out_of_range", "sample_rate")
    assert open_store(store, create=False).requests([err["request_id"]]) == {}
