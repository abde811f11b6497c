"""The Ray Serve endpoint: config validation, then the real app on a local Ray over HTTP.

The app runs tiny checkpoints (a two-member master ensemble and a mix model) behind the
real ingress on 127.0.0.1 at a free port, and every test talks to it with httpx.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from mixscale import SAMPLE_RATE, schema
from mixscale.errors import MixscaleError
from mixscale.serve.config import ServeArgs
from mixscale.testing.serve import deploy, free_port
from mixscale.testing.signals import music_like

APP = "mixscale-test"
API_KEY_ENV = "MIXSCALE_TEST_API_KEY"
API_KEY = "test-key-3f9c"          # test-only; given to the ingress through its runtime_env
MAX_UPLOAD = 3 * 1024 * 1024
MAX_DURATION_S = 20.0


# ---------------------------------------------------------------- config (no Ray)

def test_the_shipped_config_is_a_serve_config_with_valid_args():
    with open("serve/config.yaml", encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000, "request_timeout_s": 300}
    (app,) = config["applications"]
    assert app["import_path"] == "mixscale.serve.app:build_app" and app["route_prefix"] == "/"
    args = ServeArgs.from_dict(app["args"])
    assert args.members.max_ongoing_requests >= args.members.max_batch_size
    assert ServeArgs.from_dict(args.to_dict()) == args


@pytest.mark.parametrize("args, words", [
    ({"limits": {"max_stems": 0}}, ["limits.max_stems", "0", ">= 1"]),
    ({"members": {"max_batch_size": 64, "max_ongoing_requests": 8}}, ["max_ongoing_requests", "8", "64"]),
    ({"members": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}}, ["max_replicas", "2"]),
    ({"limits": {"max_upload": 5}}, ["unknown", "max_upload"]),
    ({"versions": [{"name": "a"}, {"name": "a"}]}, ["listed twice", "'a'"]),
    ({"versions": [{"name": "v1", "master": None, "mix": None}]}, ["serves no task"]),
    ({"default_version": "v9"}, ["default_version", "v9"]),
    ({"auth": {"api_key_envs": ["not a name"]}}, ["api_key_envs", "not a name"]),
    ({"members": {"batch_wait_timeout_s": "soon"}}, ["batch_wait_timeout_s", "soon", "not a number"]),
])
def test_bad_args_raise_naming_key_value_and_range(args, words):
    with pytest.raises(MixscaleError) as info:
        ServeArgs.from_dict(args)
    for word in words:
        assert word in str(info.value)


def test_version_overrides_merge_over_the_shared_runtime():
    args = ServeArgs.from_dict({"members": {"max_batch_size": 8, "autoscaling": {"max_replicas": 3}},
                                "versions": [{"name": "a", "members": {"autoscaling": {"min_replicas": 2}}}]})
    member = args.versions[0].members
    assert (member.max_batch_size, member.autoscaling.min_replicas, member.autoscaling.max_replicas) == (8, 2, 3)


def test_mixscale_serve_prints_the_effective_config(tmp_path, capsys):
    from mixscale.cli.main import main
    from mixscale.testing.models import tiny_checkpoint

    mix = tiny_checkpoint(tmp_path / "mix", task="mix")
    assert main(["serve", "--print-config", "--model", str(mix), "--port", "9123"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["http_options"]["port"] == 9123
    (version,) = config["applications"][0]["args"]["versions"]
    assert version == {"name": "v1", "master": "default", "mix": str(mix.resolve())}
    assert main(["serve", "--print-config", "--port", "70000"]) == 2
    assert "--port = 70000" in capsys.readouterr().err


# ---------------------------------------------------------------- the running app

def _wav(x: np.ndarray, rate: int = SAMPLE_RATE, fmt: str = "WAV", subtype: str | None = "PCM_16") -> bytes:
    """x (C, T) as file bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x).T, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    y, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return y.T, rate


def _song(seconds: float, seed: int = 0) -> np.ndarray:
    return music_like(seconds, SAMPLE_RATE, seed=seed)[0].numpy()


def _app_args(tmp) -> dict:
    from mixscale.testing.models import tiny_checkpoint, tiny_ensemble_checkpoint

    master = tiny_ensemble_checkpoint(tmp / "master", encoders=("cnn", "mlp"))
    mix = tiny_checkpoint(tmp / "mix", task="mix")
    small = {"num_cpus": 0.2, "autoscaling": {"min_replicas": 1, "max_replicas": 1}}
    return {
        "versions": [{"name": "v1", "master": str(master), "mix": str(mix)}],
        "members": {**small, "max_batch_size": 8, "windows_per_call": 2, "max_ongoing_requests": 16},
        # Small ensemble queues so that back-pressure is reachable with a few requests.
        "ensembles": {**small, "max_ongoing_requests": 2, "max_queued_requests": 2},
        "ingress": {**small, "max_ongoing_requests": 32, "runtime_env": {"env_vars": {API_KEY_ENV: API_KEY}}},
        "limits": {"max_upload_bytes": MAX_UPLOAD, "max_duration_s": MAX_DURATION_S, "max_stems": 3,
                   "request_timeout_s": 60, "max_inflight": 6, "retry_after_s": 2},
        "auth": {"api_key_envs": [API_KEY_ENV]},
    }


@pytest.fixture(scope="module")
def service(ray_session, tmp_path_factory):
    """(httpx client with the API key, args, checkpoint folder) of the running test app."""
    import httpx
    from ray import serve

    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = _app_args(tmp)
    deploy(args, name=APP, timeout_s=240)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90,
                          headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        yield client, args, tmp
    finally:
        client.close()
        serve.delete(APP)
        serve.shutdown()


def _analyze(client, audio: bytes, name: str = "song.wav", **kw):
    return client.post("/v1/analyze", files={"file": (name, audio, "audio/wav")}, **kw)


def _error(response, status: int, code: str, field: str | None = "any") -> dict:
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert err["code"] == code, err
    if field != "any":
        assert err["field"] == field, err
    assert err["request_id"] == response.headers["x-request-id"]
    assert len(err["message"]) > 10
    return err


@pytest.mark.slow
def test_analyze_equals_the_library_and_names_version_and_request(service):
    from mixscale.inference import measure
    from mixscale.inference import Predictor

    client, args, tmp = service
    x = _song(12.0)                                   # 12 s: two analysis windows (0 s and 2 s)
    r = _analyze(client, _wav(x))
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-mixscale-version"] == body["model_version"] == "v1"
    assert r.headers["x-request-id"] == body["request_id"] and len(body["request_id"]) >= 16
    decoded = torch.from_numpy(_decode(_wav(x))[0])
    local = Predictor.load(tmp / "master").analyze(decoded, SAMPLE_RATE).to_dict()
    assert body["windows"] == local["windows"] == 2
    for name in schema.names("master"):
        assert body["settings"][name] == pytest.approx(local["settings"][name], rel=1e-4, abs=1e-4), name
        assert body["units"][name] == schema.param("master", name).unit
        assert 0 <= body["uncertainty"][name] == pytest.approx(local["uncertainty"][name], abs=1e-4)
    assert sum(body["genre"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["genre"]["label"] == max(body["genre"]["probabilities"], key=body["genre"]["probabilities"].get)
    for key, value in measure(decoded, SAMPLE_RATE).items():
        assert body["loudness"][key] == pytest.approx(value, abs=1e-3)
    other = _analyze(client, _wav(x), data={"genre": "jazz"})
    assert other.json()["genre"] == {**other.json()["genre"], "label": "jazz", "given": True}
    assert other.headers["x-request-id"] != r.headers["x-request-id"]


@pytest.mark.slow
def test_concurrent_analyses_batched_together_each_equal_their_own(service):
    """The ensemble fans out the spans of concurrent requests in shared member calls; every
    answer must still be its own track's analysis (songs of 1 or 2 windows, some with a genre)."""
    from concurrent.futures import ThreadPoolExecutor

    from mixscale.inference import Predictor

    client, args, tmp = service
    songs = [(_song(seconds, seed=seed), genre) for seed, (seconds, genre) in
             enumerate([(12.0, None), (4.0, "jazz"), (16.0, None), (9.0, "rock")])]
    with ThreadPoolExecutor(len(songs)) as pool:
        answers = list(pool.map(lambda s: _analyze(client, _wav(s[0]), data={"genre": s[1]} if s[1] else {}), songs))
    predictor = Predictor.load(tmp / "master")
    for (x, genre), r in zip(songs, answers):
        assert r.status_code == 200, r.text
        local = predictor.analyze(torch.from_numpy(_decode(_wav(x))[0]), SAMPLE_RATE, genre=genre).to_dict()
        assert r.json()["windows"] == local["windows"]
        for name in schema.names("master"):
            assert r.json()["settings"][name] == pytest.approx(local["settings"][name], rel=1e-4, abs=1e-4), name


def test_pack_spans_keeps_order_and_fills_calls_up_to_the_limit():
    from mixscale.serve.deployments import pack_spans

    sizes = [1, 3, 2, 2, 4, 1, 1, 1]
    calls = pack_spans(sizes, 4)
    assert [i for call in calls for i in call] == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in call) <= 4 for call in calls)
    # Greedy in order: a call is closed only when the next span does not fit.
    assert all(sum(sizes[i] for i in a) + sizes[b[0]] > 4 for a, b in zip(calls, calls[1:]))
    assert pack_spans([], 4) == [] and pack_spans([1] * 5, 1) == [[0], [1], [2], [3], [4]]


@pytest.mark.slow
def test_master_keeps_the_loudness_promise_and_its_settings_render_it_again(service):
    from mixscale.fx.chain import master_chain
    from mixscale.fx.loudness import integrated_loudness, true_peak

    client, *_ = service
    x = _song(6.0, seed=1)
    r = client.post("/v1/master", files={"file": ("take.wav", _wav(x), "audio/wav")},
                    data={"target_lufs": "-12", "ceiling": "-1.5", "intensity": "0.5"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav" and r.headers["x-mixscale-version"] == "v1"
    assert 'filename="take.master.wav"' in r.headers["content-disposition"]
    y, rate = _decode(r.content)
    assert rate == SAMPLE_RATE and y.shape == (2, x.shape[-1])
    yt = torch.from_numpy(y)[None].double()
    assert float(integrated_loudness(yt, rate)[0]) == pytest.approx(-12.0, abs=0.2)
    assert 20 * np.log10(float(true_peak(yt, rate)[0])) <= -1.5 + 0.1
    settings = json.loads(r.headers["x-mixscale-settings"])
    assert set(settings) == set(schema.names("master")) and settings["limiter.ceiling_dbtp"] == -1.5
    again = master_chain(torch.from_numpy(_decode(_wav(x))[0])[None], SAMPLE_RATE, settings)[0].numpy()
    assert np.abs(again - y).max() < 1e-4                     # 24-bit quantization only

    flac = client.post("/v1/master", files={"file": ("take.wav", _wav(x), "audio/wav")},
                       data={"format": "flac"}, headers={"Accept": "application/json"})
    assert flac.status_code == 200, flac.text
    body = flac.json()
    assert body["audio"]["format"] == "flac" and body["model_version"] == "v1"
    assert sf.info(io.BytesIO(base64.b64decode(body["audio"]["base64"]))).format == "FLAC"
    assert body["analysis"]["windows"] == 1 and set(body["settings"]) == set(schema.names("master"))


@pytest.mark.slow
def test_mix_and_render(service):
    client, *_ = service
    a, b = _song(3.0, seed=2), _song(2.0, seed=3)
    r = client.post("/v1/mix", files=[("files", ("drums.wav", _wav(a), "audio/wav")),
                                      ("files", ("bass.flac", _wav(b, fmt="FLAC"), "audio/flac"))],
                    headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["name"] for s in body["settings"]["stems"]] == ["drums.wav", "bass.flac"]
    for stem in body["settings"]["stems"]:
        assert set(stem["settings"]) == set(schema.names("stem"))
    mixed, rate = _decode(base64.b64decode(body["audio"]["base64"]))
    assert mixed.shape == (2, a.shape[-1]) and rate == SAMPLE_RATE    # the longest stem

    settings = {"eq": {"peak2": {"gain_db": 4.0}}, "width.amount": 1.2}
    r = client.post("/v1/render", files={"file": ("s.wav", _wav(a), "audio/wav")},
                    data={"settings": json.dumps(settings)})
    assert r.status_code == 200, r.text
    used = json.loads(r.headers["x-mixscale-settings"])
    assert used["eq.peak2.gain_db"] == 4.0 and used["width.amount"] == 1.2
    assert "x-mixscale-version" not in r.headers                      # no model served it
    y, _ = _decode(r.content)
    assert y.shape == (2, a.shape[-1]) and not np.allclose(y, _decode(_wav(a))[0], atol=1e-3)


@pytest.mark.slow
def test_models_healthz_openapi_and_auth(service):
    import httpx

    from mixscale.models import read_meta

    client, args, tmp = service
    models = client.get("/v1/models").json()
    master = models["versions"]["v1"]["master"]
    meta = read_meta(tmp / "master")
    assert [m["sha256"] for m in master["members"]] == [m["sha256"] for m in meta["members"]]
    assert [m["arch"] for m in master["members"]] == ["cnn", "mlp"] and len(master["sha256"]) == 64
    assert models["versions"]["v1"]["mix"]["members"][0]["class"] == "MixModel"

    anonymous = httpx.Client(base_url=client.base_url, timeout=30)
    assert anonymous.get("/healthz").json() == client.get("/healthz").json() == {"status": "ok"}
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert {"/v1/analyze", "/v1/master", "/v1/mix", "/v1/render", "/v1/models", "/healthz"} <= set(paths)
    _error(anonymous.get("/v1/models"), 401, "unauthorized")
    _error(anonymous.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    assert anonymous.get("/v1/models", headers={"X-API-Key": API_KEY}).status_code == 200
    _error(_analyze(anonymous, _wav(_song(1.0))), 401, "unauthorized")


def _truncated_wav() -> bytes:
    return _wav(_song(2.0))[:-20000]


def _long_wav() -> bytes:
    # Over the duration limit yet under the size limit: 8 kHz mono 8-bit.
    return _wav(np.zeros((1, int(8000 * (MAX_DURATION_S + 5)))), rate=8000, subtype="PCM_U8")


BAD_UPLOADS = [
    ("corrupt audio", dict(files={"file": ("a.wav", _truncated_wav(), "audio/wav")}), 400, "invalid_audio", "file"),
    ("not audio", dict(files={"file": ("a.wav", b"%PDF-1.4 not audio" * 50, "audio/wav")}), 400, "invalid_audio",
     "file"),
    ("empty file", dict(files={"file": ("a.wav", b"", "audio/wav")}), 400, "empty_body", "file"),
    ("empty body", dict(content=b"", headers={"Content-Type": "multipart/form-data; boundary=x"}), 400,
     "empty_body", None),
    ("wrong content type", dict(json={"file": "song.wav"}), 415, "unsupported_media_type", None),
    ("missing field", dict(files={"audio": ("a.wav", b"RIFF", "audio/wav")}), 422, "missing_field", "file"),
    ("unknown field", dict(files={"file": ("a.wav", b"RIFF", "audio/wav")}, data={"tempo": "120"}), 422,
     "unknown_field", "tempo"),
    ("over-long clip", dict(files={"file": ("long.wav", _long_wav(), "audio/wav")}), 422, "too_long", "file"),
    ("unknown genre", dict(files={"file": ("a.wav", b"RIFF", "audio/wav")}, data={"genre": "polka"}), 422,
     "out_of_range", "genre"),
    ("unknown version", dict(files={"file": ("a.wav", b"RIFF", "audio/wav")},
                             headers={"X-Mixscale-Version": "v9"}), 422, "unknown_version", "X-Mixscale-Version"),
]


@pytest.mark.slow
def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_serving(service):
    from ray import serve

    client, *_ = service
    replicas_before = _replica_ids(serve)
    for what, kw, status, code, field in BAD_UPLOADS:
        err = _error(client.post("/v1/analyze", **kw), status, code, field)
        assert what and err["message"]
    song = _wav(_song(1.0))
    cases = [
        ("/v1/master", {"ceiling": "3"}, 422, "out_of_range", "ceiling"),
        ("/v1/master", {"target_lufs": "nan"}, 422, "invalid_value", "target_lufs"),
        ("/v1/master", {"intensity": "lots"}, 422, "invalid_value", "intensity"),
        ("/v1/master", {"format": "mp3"}, 422, "out_of_range", "format"),
        ("/v1/render", {"settings": "{not json"}, 400, "invalid_json", "settings"),
        ("/v1/render", {"settings": json.dumps({"eq.peak9.gain_db": 1})}, 422, "unknown_setting", "settings"),
        ("/v1/render", {"settings": json.dumps({"eq.peak2.gain_db": 40})}, 422, "out_of_range", "settings"),
        ("/v1/render", {}, 422, "missing_field", "settings"),
    ]
    for path, data, status, code, field in cases:
        err = _error(client.post(path, files={"file": ("a.wav", song, "audio/wav")}, data=data), status, code, field)
        assert "settings" not in data or "eq." not in data["settings"] or "eq.peak" in err["message"]
    stems = [("files", (f"s{i}.wav", song, "audio/wav")) for i in range(4)]
    _error(client.post("/v1/mix", files=stems), 422, "too_many_stems", "files")
    _error(client.get("/v1/nothing"), 404, "not_found")
    assert _analyze(client, song).status_code == 200
    assert _replica_ids(serve) == replicas_before              # no replica crashed or restarted


@pytest.mark.slow
def test_other_containers_and_the_upload_limit(service):
    client, *_ = service
    x = _song(2.0, seed=4)
    for name, fmt, subtype in (("a.ogg", "OGG", "VORBIS"), ("a.mp3", "MP3", "MPEG_LAYER_III"),
                               ("a.flac", "FLAC", "PCM_16")):
        r = _analyze(client, _wav(x, fmt=fmt, subtype=subtype), name=name)
        assert r.status_code == 200 and r.json()["duration_s"] == pytest.approx(2.0, abs=0.06), (name, r.text)
    big = b"\0" * (MAX_UPLOAD + 1)
    _error(_analyze(client, big), 413, "payload_too_large")

    def chunks():  # no Content-Length: counted while it arrives
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        yield boundary
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"\0" * 65536

    r = client.post("/v1/analyze", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    _error(r, 413, "payload_too_large")


def _replica_ids(serve) -> dict[str, set[str]]:
    import ray

    actors = ray.util.list_named_actors(all_namespaces=True)
    return {a["name"] for a in actors if a["name"].startswith(f"SERVE_REPLICA::{APP}#")}


def _batching(args: dict, **user_config) -> dict:
    return {**args, "members": {**args["members"], **user_config}}


@pytest.mark.slow
def test_a_member_replica_killed_under_load_is_replaced_and_requests_keep_succeeding(service):
    import ray
    from ray import serve

    client, *_ = service
    song = _wav(_song(1.0, seed=5))
    (victim,) = [n for n in _replica_ids(serve) if "#v1-master-m0#" in n]
    statuses, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            statuses.append(_analyze(client, song).status_code)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    killed_at = len(statuses)
    deadline = time.time() + 120
    replaced = set()
    while time.time() < deadline and not replaced:
        replaced = {n for n in _replica_ids(serve) if "#v1-master-m0#" in n} - {victim}
        time.sleep(0.5)
    while time.time() < deadline and len(statuses) < killed_at + 4:   # served on after the kill
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert replaced, "Serve did not start a new replica"
    assert len(statuses) >= killed_at + 4 and set(statuses) == {200}, statuses
    assert _analyze(client, song).status_code == 200


@pytest.mark.slow
def test_timeouts_and_backpressure_answer_503_or_429_with_retry_after(service):
    """Runs last: it redeploys the app with slow batches (members wait 2 s to fill one)."""
    from concurrent.futures import ThreadPoolExecutor


    client, args, _ = service
    song = _wav(_song(1.0))
    start = time.time()
    err = _error(_analyze(client, song, headers={"X-Request-Timeout": "0.001"}), 503, "timeout")
    assert time.time() - start < 10 and "0.001 s" in err["message"]
    assert err and client.get("/healthz").status_code == 200
    deploy(_batching(args, batch_wait_timeout_s=2.0, max_batch_size=16), name=APP, timeout_s=240)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _analyze(client, song), range(12)))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 429, 503} and statuses.count(200) >= 2, statuses
    rejected = [r for r in answers if r.status_code != 200]
    # 6 admitted (limits.max_inflight): 2 run and 2 queue at the ensemble, 2 find its queue full.
    assert {r.json()["error"]["code"] for r in rejected} == {"too_many_requests", "overloaded"}, statuses
    assert all(r.headers["retry-after"] == "2" for r in rejected)
    assert _analyze(client, song).status_code == 200
