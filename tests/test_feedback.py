"""Feedback: validation, durable SQLite/PostgreSQL stores, concurrent writers, export, the A/B report,
and POST /v1/feedback over real HTTP."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mixscale.cli.main import main as cli
from mixscale.product import report as R
from mixscale.product.feedback import (
    COMMENT_MAX,
    DATASET_SCHEMA,
    FeedbackError,
    SQLiteStore,
    export_dataset,
    open_store,
    parse_feedback,
    read_dataset,
)
from mixscale.testing.serve import free_port

# ------------------------------------------------------------------ validation

GOOD_RATING = {"kind": "rating", "request_ids": ["r1"], "rating": 4}
GOOD_PREF = {"kind": "preference", "request_ids": ["r1", "r2"], "preferred": "r2"}


@pytest.mark.parametrize("body, field, code", [
    ([1, 2], None, "invalid_value"),
    ({"request_ids": ["r1"], "rating": 3}, "kind", "missing_field"),
    ({"kind": "rating", "rating": 3}, "request_ids", "missing_field"),
    ({**GOOD_RATING, "kind": "vote"}, "kind", "out_of_range"),
    ({**GOOD_RATING, "rating": 6}, "rating", "out_of_range"),
    ({**GOOD_RATING, "rating": 0}, "rating", "out_of_range"),
    ({**GOOD_RATING, "rating": 4.5}, "rating", "out_of_range"),
    ({**GOOD_RATING, "rating": True}, "rating", "out_of_range"),
    ({"kind": "rating", "request_ids": ["r1"]}, "rating", "missing_field"),
    ({**GOOD_RATING, "request_ids": []}, "request_ids", "invalid_value"),
    ({**GOOD_RATING, "request_ids": "r1"}, "request_ids", "invalid_value"),
    ({**GOOD_RATING, "request_ids": ["bad id!"]}, "request_ids", "invalid_value"),
    ({**GOOD_RATING, "request_ids": ["r1", "r1"]}, "request_ids", "invalid_value"),
    ({**GOOD_RATING, "request_ids": [f"r{i}" for i in range(9)]}, "request_ids", "out_of_range"),
    ({**GOOD_RATING, "preferred": "r1"}, "preferred", "invalid_value"),
    ({**GOOD_RATING, "comment": 5}, "comment", "invalid_value"),
    ({**GOOD_RATING, "comment": "x" * (COMMENT_MAX + 1)}, "comment", "out_of_range"),
    ({**GOOD_RATING, "versions": ["A", "B"]}, "versions", "invalid_value"),
    ({**GOOD_RATING, "versions": ["bad version"]}, "versions", "invalid_value"),
    ({**GOOD_RATING, "extra": 1}, "extra", "unknown_field"),
    ({**GOOD_PREF, "request_ids": ["r1"], "preferred": "r1"}, "request_ids", "out_of_range"),
    ({**GOOD_PREF, "preferred": "r3"}, "preferred", "out_of_range"),
    ({"kind": "preference", "request_ids": ["r1", "r2"]}, "preferred", "missing_field"),
    ({**GOOD_PREF, "rating": 3}, "rating", "invalid_value"),
])
def test_malformed_bodies_name_the_field(body, field, code):
    with pytest.raises(FeedbackError) as err:
        parse_feedback(body)
    assert (err.value.field, err.value.code) == (field, code), str(err.value)
    assert str(err.value)  # a message a person can read


def test_valid_bodies_parse():
    fb = parse_feedback({**GOOD_PREF, "comment": "  warmer  ", "versions": ["A", None]}, client_id="c",
                        user_agent="u" * 1000)
    assert (fb.kind, fb.request_ids, fb.preferred_request_id, fb.comment) == ("preference", ("r1", "r2"), "r2",
                                                                              "warmer")
    assert fb.versions == ("A", None) and len(fb.user_agent) == 512 and fb.rating is None
    assert parse_feedback(GOOD_RATING).rating == 4


# ------------------------------------------------------------------ the SQLite store

def fill_log(store, versions=("A", "B")):
    store.record_request("r1", versions[0], "/v1/master", {"eq.peak2.gain_db": -2.5}, {"target_lufs": -14.0}, "c1")
    store.record_request("r2", versions[1], "/v1/master", {"eq.peak2.gain_db": 1.0}, {"target_lufs": -12.0}, "c1")


def test_persists_across_close_and_reopen(tmp_path):
    path = tmp_path / "sub" / "fb.sqlite3"
    with open_store(path) as store:
        fill_log(store)
        first = store.add(parse_feedback(GOOD_PREF, client_id="c1"))
        store.add(parse_feedback({**GOOD_RATING, "comment": "punchy"}, client_id="c1"))
    assert store.count() == 2  # a closed store reconnects on use
    store.close()
    again = open_store(f"sqlite:///{path}", create=False)
    rows = again.feedback()
    assert [r["id"] for r in rows] == [first, first + 1]
    assert rows[0]["versions"] == ["A", "B"] and rows[0]["preferred_version"] == "B"
    assert rows[1]["rating"] == 4 and rows[1]["comment"] == "punchy" and rows[1]["versions"] == ["A"]
    assert again.requests(["r1", "nope"])["r1"]["settings"] == {"eq.peak2.gain_db": -2.5}
    # WAL is on and a pickled copy (what Ray ships to a replica) opens the same file.
    assert again._conn().raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pickle.loads(pickle.dumps(again)).count() == 2


def test_log_versions_win_over_sent_ones_and_fill_gaps(tmp_path):
    store = open_store(tmp_path / "fb.sqlite3")
    fill_log(store)
    row = store.get(store.add(parse_feedback({**GOOD_PREF, "versions": ["X", "Y"]})))
    assert row["versions"] == ["A", "B"] and row["preferred_version"] == "B"
    row = store.get(store.add(parse_feedback({"kind": "rating", "request_ids": ["unlogged"], "rating": 2,
                                              "versions": ["Y"]})))
    assert row["versions"] == ["Y"]
    row = store.get(store.add(parse_feedback({"kind": "rating", "request_ids": ["unlogged2"], "rating": 2})))
    assert row["versions"] == [None]
    store.record_request("r1", "Z", "/v1/master")  # a repeated id keeps the first entry
    assert store.requests(["r1"])["r1"]["version"] == "A"


def test_missing_store_and_bad_scheme_are_clear(tmp_path):
    with pytest.raises(FeedbackError, match="no such file"):
        open_store(tmp_path / "absent.sqlite3", create=False)
    with pytest.raises(FeedbackError, match="unknown scheme"):
        open_store("mysql://x/y")


WRITER = """
import sys
from mixscale.product.feedback import open_store, parse_feedback
store = open_store(sys.argv[1])
tag, n = sys.argv[2], int(sys.argv[3])
for i in range(n):
    store.add(parse_feedback({"kind": "rating", "request_ids": [f"{tag}-{i}"], "rating": 1 + i % 5},
                             client_id=tag))
"""


def concurrent_writers(target: str, procs: int = 4, rows: int = 100, threads: int = 4) -> None:
    """``procs`` processes and ``threads`` threads of this one write ``rows`` rows each, at once."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    children = [subprocess.Popen([sys.executable, "-c", WRITER, target, f"p{k}", str(rows)], env=env,
                                 stderr=subprocess.PIPE) for k in range(procs)]
    store = open_store(target)
    errors = []

    def write(tag):
        try:
            for i in range(rows):
                store.add(parse_feedback({"kind": "rating", "request_ids": [f"{tag}-{i}"], "rating": 3},
                                         client_id=tag))
        except Exception as exc:  # reported below
            errors.append(exc)

    ts = [threading.Thread(target=write, args=(f"t{k}",)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for c in children:
        _, err = c.communicate(timeout=60)
        assert c.returncode == 0, err.decode()[-2000:]
    assert not errors, errors
    got = store.feedback()
    tags = [f"p{k}" for k in range(procs)] + [f"t{k}" for k in range(threads)]
    expected = {f"{tag}-{i}" for tag in tags for i in range(rows)}
    assert len(got) == len(expected)
    assert {r["request_ids"][0] for r in got} == expected
    assert len({r["id"] for r in got}) == len(got)


def test_concurrent_writers_lose_nothing(tmp_path):
    concurrent_writers(str(tmp_path / "fb.sqlite3"))


# ------------------------------------------------------------------ export

def test_export_jsonl_and_parquet_round_trip(tmp_path):
    store = open_store(tmp_path / "fb.sqlite3")
    fill_log(store)
    store.add(parse_feedback({**GOOD_PREF, "comment": "the second is clearer"}, client_id="c1", user_agent="ua"))
    store.add(parse_feedback({"kind": "rating", "request_ids": ["r9"], "rating": 5}))
    for name in ("ds.jsonl", "ds.parquet"):
        assert export_dataset(store, tmp_path / name) == 2
        recs = read_dataset(tmp_path / name)
        assert [r["schema"] for r in recs] == [DATASET_SCHEMA] * 2
        pref, rating = recs
        assert pref["request_ids"] == ["r1", "r2"] and pref["versions"] == ["A", "B"]
        assert pref["preferred_request_id"] == "r2" and pref["preferred_version"] == "B"
        assert [q["settings"] for q in pref["requests"]] == [{"eq.peak2.gain_db": -2.5}, {"eq.peak2.gain_db": 1.0}]
        assert pref["requests"][1]["params"] == {"target_lufs": -12.0}
        assert pref["comment"] == "the second is clearer" and pref["user_agent"] == "ua"
        assert rating["rating"] == 5 and rating["requests"] == [None] and rating["versions"] == [None]
    line = json.loads((tmp_path / "ds.jsonl").read_text().splitlines()[0])
    assert set(line) == {"schema", "id", "created_at", "kind", "rating", "request_ids", "versions",
                         "preferred_request_id", "preferred_version", "client_id", "comment", "user_agent",
                         "requests"}
    assert line["created_at"].endswith("Z")


def test_feedback_export_command(tmp_path, capsys):
    path = tmp_path / "fb.sqlite3"
    store = open_store(path)
    fill_log(store)
    store.add(parse_feedback(GOOD_PREF))
    assert cli(["feedback", "export", "--store", str(path), "--out", str(tmp_path / "out" / "ds.jsonl")]) == 0
    assert read_dataset(tmp_path / "out" / "ds.jsonl")[0]["preferred_version"] == "B"
    assert "wrote 1 feedback records" in capsys.readouterr().err
    assert cli(["feedback", "export", "--store", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------------ the A/B report

def test_wilson_and_t_intervals_match_references():
    lo, hi = R.wilson_interval(8, 10)
    assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3
    assert R.wilson_interval(0, 0) is None and abs(R.wilson_interval(0, 5)[0]) < 1e-12
    vals = [1, 3, 4, 4, 5, 2, 5]
    mean, sd = sum(vals) / 7, (sum((v - 24 / 7) ** 2 for v in vals) / 6) ** 0.5
    t975_6 = 2.446911851  # Student's t, 97.5th percentile, 6 degrees of freedom (tables)
    ref = (mean - t975_6 * sd / 7**0.5, mean + t975_6 * sd / 7**0.5)
    assert all(abs(a - b) < 1e-6 for a, b in zip(R.mean_interval(vals), ref))
    assert R.mean_interval([4]) is None


def fill_votes(store, a_ratings, b_ratings, a_wins, b_wins, same=0):
    """Log renders by version A and B and store the given votes."""
    n = 0

    def rid(version):
        nonlocal n
        n += 1
        store.record_request(f"q{n}", version, "/v1/master")
        return f"q{n}"

    for r in a_ratings:
        store.add(parse_feedback({"kind": "rating", "request_ids": [rid("A")], "rating": r}))
    for r in b_ratings:
        store.add(parse_feedback({"kind": "rating", "request_ids": [rid("B")], "rating": r}))
    for winner, count in (("A", a_wins), ("B", b_wins)):
        for _ in range(count):
            a, b = rid("A"), rid("B")
            store.add(parse_feedback({"kind": "preference", "request_ids": [a, b], "preferred": a if winner == "A"
                                      else b}))
    for _ in range(same):
        a, b = rid("A"), rid("A")
        store.add(parse_feedback({"kind": "preference", "request_ids": [a, b], "preferred": a}))


def test_ab_report_calls_a_winner_on_a_filled_store(tmp_path, capsys):
    path = tmp_path / "fb.sqlite3"
    fill_votes(open_store(path), a_ratings=[5, 4, 5, 4, 5] * 8, b_ratings=[3, 2, 3, 3, 2] * 8, a_wins=45,
               b_wins=15, same=3)
    assert cli(["ab-report", "--store", str(path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    a, b = rep["versions"]["A"], rep["versions"]["B"]
    assert (a["ratings"]["n"], b["ratings"]["n"]) == (40, 40)
    assert a["ratings"]["mean"] == pytest.approx(4.6) and b["ratings"]["mean"] == pytest.approx(2.6)
    assert a["ratings"]["histogram"] == {"1": 0, "2": 0, "3": 0, "4": 16, "5": 24}
    assert (a["preference"]["comparisons"], a["preference"]["wins"], b["preference"]["wins"]) == (60, 45, 15)
    assert a["preference"]["share"] == pytest.approx(0.75)
    assert a["preference"]["ci"][0] > 0.5 > b["preference"]["ci"][1]
    assert rep["same_version_preferences"] == 3
    assert rep["ratings_verdict"]["winner"] == "A" and rep["preference_verdict"]["winner"] == "A"
    assert cli(["ab-report", "--store", str(path)]) == 0
    text = capsys.readouterr().out
    assert "winner A" in text and "[0." in text and "60" in text


def test_ab_report_says_too_few_votes_or_overlap(tmp_path, capsys):
    path = tmp_path / "few.sqlite3"
    fill_votes(open_store(path), a_ratings=[5] * 5, b_ratings=[1] * 5, a_wins=5, b_wins=0)
    assert cli(["ab-report", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("too few votes to call a winner") == 2 and "at least 30" in out
    rep = R.ab_report(open_store(path).feedback(), min_votes=5)
    assert rep["ratings_verdict"]["winner"] == "A"  # 5 each clears a threshold of 5 and the intervals apart
    tied = tmp_path / "tied.sqlite3"
    fill_votes(open_store(tied), a_ratings=[3, 4] * 20, b_ratings=[4, 3] * 20, a_wins=16, b_wins=14)
    rep = R.ab_report(open_store(tied).feedback())
    for verdict in (rep["ratings_verdict"], rep["preference_verdict"]):
        assert verdict["winner"] is None and "overlaps" in verdict["reason"]
    assert cli(["ab-report", "--store", str(path), "--min-votes", "0"]) == 2


# ------------------------------------------------------------------ PostgreSQL

PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(PG_BIN.glob("*/bin/pg_ctl")) if PG_BIN.is_dir() else []
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server (initdb + pg_ctl from Debian's postgresql); skips without one."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="mixscale-pg-")
    os.chmod(root, 0o777)
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), free_port()
    run = lambda *cmd: subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=60)  # noqa: E731
    res = run(str(bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    assert res.returncode == 0, res.stderr
    res = run(str(bin_dir / "pg_ctl"), "-D", data, "-w", "-l", os.path.join(root, "log"), "-o",
              f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    assert res.returncode == 0, res.stderr + res.stdout
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_store_persists_exports_and_takes_concurrent_writers(postgres_url, tmp_path):
    store = open_store(postgres_url)
    assert type(store).__name__ == "PostgresStore"
    fill_log(store)
    first = store.add(parse_feedback({**GOOD_PREF, "comment": "it's \"odd\"; DROP TABLE feedback; --"}))
    store.close()
    again = open_store(postgres_url)
    row = again.get(first)
    assert row["versions"] == ["A", "B"] and row["comment"].startswith("it's")  # bound, not spliced
    assert row["created_at"].endswith("Z")
    assert export_dataset(again, tmp_path / "pg.jsonl") == 1
    assert read_dataset(tmp_path / "pg.jsonl")[0]["requests"][0]["settings"] == {"eq.peak2.gain_db": -2.5}
    again._write(lambda cur: cur.execute("DELETE FROM feedback"))
    concurrent_writers(postgres_url, procs=3, rows=40, threads=3)


def test_postgres_url_is_redacted_in_errors():
    pytest.importorskip("psycopg")
    with pytest.raises(FeedbackError) as err:
        open_store(f"postgresql://u:secret@127.0.0.1:{free_port()}/db").count()
    assert "secret" not in str(err.value) and "u:***@" in str(err.value)


# ------------------------------------------------------------------ POST /v1/feedback over HTTP (router alone)

class Server:
    """uvicorn serving an app on a free port, in a thread; ``stop`` shuts it down."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def product_server(store_path):
    from fastapi import FastAPI

    from mixscale.product.routes import Product

    app = FastAPI()
    app.include_router(Product({"feedback_store": str(store_path)}).router())
    return Server(app)


def test_feedback_route_stores_and_rejects_over_http(tmp_path):
    import httpx

    path = tmp_path / "fb.sqlite3"
    fill_log(SQLiteStore(path))
    srv = product_server(path)
    try:
        with httpx.Client(base_url=srv.url) as http:
            r = http.post("/v1/feedback", json=GOOD_PREF, headers={"X-Client-Id": "tester-1"})
            assert r.status_code == 201, r.text
            assert r.json()["versions"] == ["A", "B"] and r.json()["preferred_version"] == "B"
            r = http.post("/v1/feedback", json=GOOD_RATING)  # no id: a new one, set as a cookie
            assert r.status_code == 201 and len(r.cookies.get("mixscale_client", "")) == 32
            bad = [
                (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "invalid_json"),
                (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty_body"),
                (dict(data={"kind": "rating"}), 415, "unsupported_media_type"),
                (dict(json={**GOOD_RATING, "rating": 9}), 422, "out_of_range"),
                (dict(json={"kind": "rating"}), 422, "missing_field"),
                (dict(json={**GOOD_RATING, "stars": 5}), 422, "unknown_field"),
                (dict(json={**GOOD_RATING, "comment": "x" * 20000}), 413, "payload_too_large"),
                (dict(json=GOOD_RATING, headers={"X-Client-Id": "no spaces"}), 422, "invalid_value"),
            ]
            for kwargs, status, code in bad:
                r = http.post("/v1/feedback", **kwargs)
                assert r.status_code == status, (kwargs, r.text)
                err = r.json()["error"]
                assert err["code"] == code and err["message"] and "field" in err
            assert http.post("/v1/feedback", json={**GOOD_RATING, "rating": 9}).json()["error"]["field"] == "rating"
    finally:
        srv.stop()
    # Restart: a new app on the same store sees the two stored rows and adds a third.
    srv = product_server(path)
    try:
        with httpx.Client(base_url=srv.url) as http:
            assert http.post("/v1/feedback", json=GOOD_RATING).json()["id"] == 3
    finally:
        srv.stop()
    rows = open_store(path).feedback()
    assert [r["client_id"] for r in rows][0] == "tester-1" and len(rows) == 3
    assert all(r["user_agent"].startswith("python-httpx") for r in rows)


def test_eq_curve_route_matches_the_eq(tmp_path):
    import httpx
    import torch

    from mixscale import SAMPLE_RATE
    from mixscale.fx.eq import eq_response_db

    srv = product_server(tmp_path / "fb.sqlite3")
    try:
        with httpx.Client(base_url=srv.url) as http:
            settings = {"eq": {"peak2": {"freq_hz": 1000, "gain_db": 6, "q": 2}}, "eq.high_shelf.gain_db": -4}
            r = http.get("/v1/eq-curve", params={"settings": json.dumps(settings), "points": 64})
            assert r.status_code == 200, r.text
            c = r.json()
            assert len(c["freqs_hz"]) == len(c["gain_db"]) == 64
            assert c["freqs_hz"][0] == pytest.approx(20) and c["freqs_hz"][-1] == pytest.approx(20000)
            k = max(range(64), key=lambda i: c["gain_db"][i])
            assert 800 < c["freqs_hz"][k] < 1250 and c["gain_db"][k] > 5.5
            assert c["gain_db"][-1] == pytest.approx(-4, abs=0.3)
            p = {"low_shelf_freq_hz": 100.0, "low_shelf_gain_db": 0.0, "peak1_freq_hz": 250.0, "peak1_gain_db": 0.0,
                 "peak1_q": 1.0, "peak2_freq_hz": 1000.0, "peak2_gain_db": 6.0, "peak2_q": 2.0,
                 "peak3_freq_hz": 4000.0, "peak3_gain_db": 0.0, "peak3_q": 1.0, "high_shelf_freq_hz": 8000.0,
                 "high_shelf_gain_db": -4.0}
            ref = eq_response_db(SAMPLE_RATE, torch.tensor(c["freqs_hz"], dtype=torch.float64),
                                 **{k: torch.tensor([v], dtype=torch.float64) for k, v in p.items()})[0]
            assert max(abs(a - b) for a, b in zip(c["gain_db"], ref.tolist())) < 1e-6
            for params, code in [({"settings": "{"}, "invalid_json"), ({"settings": '{"eq.peak2.gain_db": 40}'},
                                 "out_of_range"), ({"settings": '{"nope": 1}'}, "unknown_setting"),
                                 ({"points": 5}, "out_of_range")]:
                r = http.get("/v1/eq-curve", params=params)
                assert r.status_code in (400, 422) and r.json()["error"]["code"] == code, r.text
            ui = http.get("/v1/ui-config").json()
            assert ui["ceiling"]["min"] == -9.0 and ui["ceiling"]["max"] == 0.0 and ui["intensity"]["max"] == 1.0
            page = http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            assert http.get("/web/app.js").headers["content-type"].startswith("text/javascript")
            assert http.get("/web/../routes.py").status_code == 404
    finally:
        srv.stop()


# ------------------------------------------------------------------ on the real service

def _master(http, clip, **headers):
    """(request id, version, settings) of one /v1/master call."""
    r = http.post("/v1/master", files={"file": ("clip.wav", clip, "audio/wav")},
                  data={"target_lufs": "-16", "intensity": "0.5"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["X-Request-Id"], r.headers["X-Mixscale-Version"], \
        json.loads(r.headers["X-Mixscale-Settings"])


@pytest.mark.slow
def test_feedback_on_the_real_service_survives_a_restart(ray_session, tmp_path):
    import httpx

    from mixscale.testing.serve import ab_app_args, deploy, running_app, wav_bytes

    args = ab_app_args()
    path = args["product"]["feedback_store"]
    clip = wav_bytes(0.5)
    client = {"X-Client-Id": "restart-tester"}
    with running_app(args) as url:
        before = open_store(path).count()
        with httpx.Client(base_url=url, timeout=60, headers=client) as http:
            r1, v1, s1 = _master(http, clip)
            other = {"A": "B", "B": "A"}[v1]
            r2, v2, _ = _master(http, clip, **{"X-Mixscale-Version": other})
            assert v2 == other
            r = http.post("/v1/feedback", json={"kind": "preference", "request_ids": [r1, r2], "preferred": r2,
                                                "comment": "clearer top end"})
            assert r.status_code == 201, r.text
            assert r.json()["versions"] == [v1, v2] and r.json()["preferred_version"] == v2  # from the request log
            bad = http.post("/v1/feedback", json={"kind": "rating", "request_ids": [r1], "rating": 11})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "rating"
            assert bad.json()["error"]["request_id"] == bad.headers["X-Request-Id"]
        deploy(args, force=True)  # restart the service: new replicas on the same store
        with httpx.Client(base_url=url, timeout=60, headers=client) as http:
            r = http.post("/v1/feedback", json={"kind": "rating", "request_ids": [r1], "rating": 4})
            assert r.status_code == 201 and r.json()["versions"] == [v1]
    rows = open_store(path).feedback()
    assert len(rows) == before + 2
    assert rows[-2]["request_ids"] == [r1, r2] and rows[-2]["comment"] == "clearer top end"
    assert rows[-1]["client_id"] == "restart-tester" and rows[-1]["rating"] == 4
    assert cli(["feedback", "export", "--store", path, "--out", str(tmp_path / "ds.jsonl")]) == 0
    rec = read_dataset(tmp_path / "ds.jsonl")[-1]
    assert rec["requests"][0]["settings"] == s1 and rec["requests"][0]["endpoint"] == "/v1/master"
    rep = R.ab_report(open_store(path).feedback())
    assert rep["versions"][v1]["ratings"]["n"] >= 1 and rep["versions"][v2]["preference"]["wins"] >= 1
