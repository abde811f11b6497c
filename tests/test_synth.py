"""The embedded synthetic corpus: layout, settings, the mix as the chain renders it,
no silent filler, determinism, and genres that differ as designed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mixscale import SAMPLE_RATE, schema
from mixscale.cli.main import main
from mixscale.data.synth import patterns, synthesize
from mixscale.data.synth.corpus import CORPUS_FILE, SONGS_DIR
from mixscale.data.synth.events import Clock
from mixscale.data.synth.mixdown import single_thread, stem_tensors
from mixscale.data.synth.song import ROLES, genre_for, make_song, quantize_24bit, song_id
from mixscale.errors import CorpusError
from mixscale.fx.chain import mix_chain
from mixscale.fx.loudness import integrated_loudness, true_peak
from mixscale.genres import SYNTH_GENRES

SEED, SONGS, SECONDS = 7, 5, 8.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """One song per genre (the first block of five is balanced), 8 s each."""
    root = tmp_path_factory.mktemp("synth") / "corpus"
    summary = synthesize(root, songs=SONGS, seconds=SECONDS, seed=SEED, workers=1, progress=False)
    assert summary["written"] == SONGS and summary["kept"] == 0
    return root


def _read(path: Path) -> np.ndarray:
    """(2, T) float64, exactly the 24-bit values of the file."""
    x, sr = sf.read(path, dtype="float64", always_2d=True)
    assert sr == SAMPLE_RATE
    return x.T


def _songs(root: Path) -> dict[str, Path]:
    """genre -> song folder."""
    out = {}
    for folder in sorted((root / SONGS_DIR).iterdir()):
        out[json.loads((folder / "meta.json").read_text())["genre"]] = folder
    return out


# ---------------------------------------------------------------- layout and metadata

def test_layout_and_metadata(corpus):
    header = json.loads((corpus / CORPUS_FILE).read_text())
    assert header == {"generator": "mixscale.synth", "version": 1, "seed": SEED, "songs": SONGS,
                      "seconds": SECONDS, "sample_rate": SAMPLE_RATE, "genres": list(SYNTH_GENRES)}
    folders = sorted(p.name for p in (corpus / SONGS_DIR).iterdir())
    assert folders == [song_id(i) for i in range(SONGS)] == [f"synth-{i:06d}" for i in range(SONGS)]
    genres = []
    for name in folders:
        folder = corpus / SONGS_DIR / name
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["song_id"] == name
        assert meta["stems"] == ["drums", "bass", "harmony", "lead"]
        assert meta["sample_rate"] == SAMPLE_RATE and meta["seconds"] == SECONDS
        lo, hi = patterns.TEMPO[meta["genre"]]
        assert lo <= meta["tempo_bpm"] <= hi
        assert meta["key"].split()[1] in ("major", "minor", "dorian", "mixolydian")
        # Complete settings of each chain, every value inside the schema.
        for role in meta["stems"]:
            settings = meta["stem_settings"][role]
            assert set(settings) == set(schema.names("stem"))
            assert schema.validate(settings, "stem", f"{name}/{role}") == settings
        assert set(meta["master_settings"]) == set(schema.names("master"))
        assert schema.validate(meta["master_settings"], "master", name) == meta["master_settings"]
        for path in [folder / "mix.flac"] + [folder / "stems" / f"{r}.flac" for r in meta["stems"]]:
            info = sf.info(path)
            assert (info.format, info.subtype, info.channels, info.samplerate) == ("FLAC", "PCM_24", 2, SAMPLE_RATE)
            assert info.frames == round(SECONDS * SAMPLE_RATE)
        genres.append(meta["genre"])
    assert sorted(genres) == sorted(SYNTH_GENRES)  # balanced: each genre once per block of five


def test_genres_are_balanced_for_any_seed():
    for seed in (0, 1, 123):
        counts = {g: 0 for g in SYNTH_GENRES}
        for i in range(25):
            counts[genre_for(seed, i)] += 1
        assert set(counts.values()) == {5}
    assert [genre_for(0, i) for i in range(10)] != [genre_for(1, i) for i in range(10)]


# ---------------------------------------------------------------- the mix

def test_mix_is_the_chain_applied_to_the_stems(corpus):
    for genre, folder in _songs(corpus).items():
        meta = json.loads((folder / "meta.json").read_text())
        stems = np.stack([_read(folder / "stems" / f"{r}.flac") for r in meta["stems"]])
        x = torch.from_numpy(stems.astype(np.float32))[None]  # (1, S, 2, T)
        # One torch thread, as the generator renders: float32 results depend on the thread count.
        with single_thread(), torch.no_grad():
            rendered = mix_chain(x, SAMPLE_RATE, stem_tensors(meta["stem_settings"], meta["stems"]),
                                 meta["master_settings"])[0].numpy()
        mix = _read(folder / "mix.flac")
        assert np.array_equal(quantize_24bit(rendered), mix.astype(np.float32)), genre
        # The settings matter: the mix is not the plain sum of the stems at any one gain.
        plain = stems.sum(axis=0)
        g = float((plain * mix).sum() / (plain * plain).sum())
        assert np.abs(mix - g * plain).max() > 0.01, genre


def test_mix_true_peak_at_or_below_ceiling(corpus):
    for genre, folder in _songs(corpus).items():
        meta = json.loads((folder / "meta.json").read_text())
        mix = torch.from_numpy(_read(folder / "mix.flac")[None].astype(np.float32))
        peak_dbtp = 20.0 * math.log10(float(true_peak(mix)[0]))
        assert peak_dbtp <= meta["master_settings"]["limiter.ceiling_dbtp"] + 1e-3, genre
        assert abs(peak_dbtp - meta["true_peak_dbtp"]) < 0.01


def test_loudness_near_genre_target(corpus):
    for genre, folder in _songs(corpus).items():
        meta = json.loads((folder / "meta.json").read_text())
        mix = torch.from_numpy(_read(folder / "mix.flac")[None].astype(np.float32))
        lufs = float(integrated_loudness(mix, SAMPLE_RATE)[0])
        assert abs(lufs - meta["loudness_lufs"]) < 0.01
        # At the target, or below it where the limit on limiting kept the mix from being crushed.
        assert meta["target_lufs"] - 2.0 <= lufs <= meta["target_lufs"] + 0.75, genre


# ---------------------------------------------------------------- no silent filler

def test_every_stem_carries_signal_every_second(corpus):
    for genre, folder in _songs(corpus).items():
        for role in ROLES:
            x = _read(folder / "stems" / f"{role}.flac")
            total = 20 * np.log10(np.sqrt(np.mean(x ** 2)))
            assert total > -30.0, (genre, role)
            seconds = x.shape[1] // SAMPLE_RATE
            per_second = x[:, :seconds * SAMPLE_RATE].reshape(2, seconds, SAMPLE_RATE)
            rms_db = 20 * np.log10(np.sqrt((per_second ** 2).mean(axis=(0, 2))) + 1e-12)
            assert rms_db.min() > max(total - 30.0, -60.0), (genre, role, rms_db.round(1))


# ---------------------------------------------------------------- determinism

def _assert_same_song_files(a: Path, b: Path) -> None:
    for rel in ["meta.json", "mix.flac"] + [f"stems/{r}.flac" for r in ROLES]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_same_seed_same_bytes(corpus, tmp_path):
    # The first song again, in a corpus of one: a song depends on (seed, index, seconds) only.
    other = tmp_path / "again"
    synthesize(other, songs=1, seconds=SECONDS, seed=SEED, workers=1, progress=False)
    _assert_same_song_files(corpus / SONGS_DIR / song_id(0), other / SONGS_DIR / song_id(0))


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes(corpus, tmp_path):
    other = tmp_path / "pool"
    synthesize(other, songs=2, seconds=SECONDS, seed=SEED, workers=2, progress=False)
    for i in range(2):
        _assert_same_song_files(corpus / SONGS_DIR / song_id(i), other / SONGS_DIR / song_id(i))


def test_different_seed_different_song():
    one = make_song(1, 0, 2.0)
    same = make_song(1, 0, 2.0)
    other = make_song(2, 0, 2.0)
    assert np.array_equal(one.stems, same.stems) and np.array_equal(one.mix, same.mix)
    assert one.meta == same.meta
    assert not np.array_equal(one.mix, other.mix)
    assert one.meta["stem_settings"] != other.meta["stem_settings"]


# ---------------------------------------------------------------- genres differ as designed

def _features(folder: Path) -> dict[str, float]:
    from scipy.signal import butter, sosfilt, sosfiltfilt

    meta = json.loads((folder / "meta.json").read_text())
    x = _read(folder / "mix.flac")
    mid = x[0] + x[1]
    spectrum = np.abs(np.fft.rfft(mid)) ** 2
    freqs = np.fft.rfftfreq(mid.shape[0], 1.0 / SAMPLE_RATE)
    high = sosfiltfilt(butter(4, 200.0, "highpass", fs=SAMPLE_RATE, output="sos"), x, axis=1)
    block = int(0.4 * SAMPLE_RATE)
    blocks = mid[:mid.shape[0] // block * block].reshape(-1, block)
    block_db = 10 * np.log10((blocks ** 2).mean(axis=1) + 1e-20)
    # Kick regularity: the drums' low band, correlated with itself one beat later.
    drums = _read(folder / "stems" / "drums.flac").mean(axis=0)
    env = np.abs(sosfilt(butter(4, 150.0, fs=SAMPLE_RATE, output="sos"), drums))
    hop = SAMPLE_RATE // 100
    env = env[:env.shape[0] // hop * hop].reshape(-1, hop).mean(axis=1)
    env = env - env.mean()
    lag = int(round(60.0 / meta["tempo_bpm"] * 100))
    return {
        "crest_db": 20 * np.log10(np.abs(x).max() / np.sqrt(np.mean(x ** 2))),
        "block_range_db": block_db.max() - np.percentile(block_db, 10),
        "side_db": 10 * np.log10(((high[0] - high[1]) ** 2).sum() / ((high[0] + high[1]) ** 2).sum()),
        "low_share_db": 10 * np.log10(spectrum[freqs < 120].sum() / spectrum.sum()),
        "mid_share_db": 10 * np.log10(spectrum[(freqs > 500) & (freqs < 2500)].sum() / spectrum.sum()),
        "lufs": meta["loudness_lufs"],
        "beat_correlation": float((env[:-lag] * env[lag:]).sum() / (env ** 2).sum()),
    }


def test_genres_differ_as_designed(corpus):
    f = {g: _features(folder) for g, folder in _songs(corpus).items()}
    others = lambda g: [h for h in f if h != g]  # noqa: E731
    # Classical and jazz keep natural dynamics; electronic and hip-hop are squashed.
    assert f["classical"]["crest_db"] > f["electronic"]["crest_db"] + 3.0
    assert f["jazz"]["crest_db"] > f["hiphop"]["crest_db"] + 3.0
    assert all(f["classical"]["block_range_db"] > f[g]["block_range_db"] + 2.0 for g in others("classical"))
    # Electronic is the widest above the (mono) low end.
    assert all(f["electronic"]["side_db"] > f[g]["side_db"] + 2.0 for g in others("electronic"))
    # Hip-hop's low end; rock's midrange.
    assert all(f["hiphop"]["low_share_db"] > f[g]["low_share_db"] + 3.0 for g in ("rock", "jazz"))
    assert f["hiphop"]["low_share_db"] > f["classical"]["low_share_db"] + 1.5
    assert f["rock"]["mid_share_db"] > max(f["electronic"]["mid_share_db"], f["hiphop"]["mid_share_db"]) + 2.0
    # Four on the floor: the kick repeats every beat in electronic, not in rock or boom-bap.
    assert f["electronic"]["beat_correlation"] > 0.7
    assert max(f["rock"]["beat_correlation"], f["hiphop"]["beat_correlation"]) < 0.3
    # Loudness: loud electronic, hip-hop and rock; quieter jazz; quietest classical.
    assert min(f[g]["lufs"] for g in ("electronic", "hiphop", "rock")) > f["jazz"]["lufs"] + 3.0
    assert f["jazz"]["lufs"] > f["classical"]["lufs"] + 2.0


def test_tempo_and_feel_per_genre():
    rng = np.random.default_rng(0)
    clocks = {g: [patterns.choose_clock(g, rng) for _ in range(20)] for g in SYNTH_GENRES}
    assert max(c.bpm for c in clocks["classical"]) < min(c.bpm for c in clocks["electronic"])
    assert max(c.bpm for c in clocks["hiphop"]) < min(c.bpm for c in clocks["electronic"])
    # Jazz swings its eighths (the off-beat lands at 60-68 % of the beat); electronic is straight.
    for c in clocks["jazz"]:
        offbeat = c.seconds([0.5])[0] / c.beat_s
        assert 0.6 <= offbeat <= 0.68
    assert all(c.swing == 0.5 and c.jitter_s == 0.0 for c in clocks["electronic"])
    straight = Clock(bpm=120.0)
    assert np.allclose(straight.seconds([0.0, 0.5, 1.0, 4.25]), [0.0, 0.25, 0.5, 2.125])


# ---------------------------------------------------------------- the output directory and the CLI

def test_same_parameters_resume_and_others_are_refused(corpus, tmp_path):
    before = {p: p.read_bytes() for p in corpus.rglob("*.flac")}
    summary = synthesize(corpus, songs=SONGS, seconds=SECONDS, seed=SEED, workers=1, progress=False)
    assert summary["written"] == 0 and summary["kept"] == SONGS
    assert {p: p.read_bytes() for p in corpus.rglob("*.flac")} == before
    with pytest.raises(CorpusError, match=r"seed=7 \(asked 8\)"):
        synthesize(corpus, songs=SONGS, seconds=SECONDS, seed=8, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        synthesize(foreign, songs=1, seconds=2.0, seed=0, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("kwargs, name", [
    (dict(songs=0), "songs"), (dict(seconds=1.0), "seconds"), (dict(seconds=float("nan")), "seconds"),
    (dict(seed=-1), "seed"), (dict(workers=0), "workers"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, name):
    args = {**dict(songs=1, seconds=2.0, seed=0, workers=1, progress=False), **kwargs}
    with pytest.raises(CorpusError, match=rf"^{name} = .* allowed range"):
        synthesize(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_cli_writes_resumes_and_refuses(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["synth", "--out", str(out), "--songs", "1", "--seconds", "2", "--seed", "3", "--no-progress"]
    assert main(argv + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 1 and summary["genres"] == {genre_for(3, 0): 1}
    # An interrupted song (a hidden partial folder) is cleaned up; finished songs are kept.
    (out / SONGS_DIR / ".synth-000001.partial").mkdir()
    assert main(argv) == 0
    assert "1 kept" in capsys.readouterr().out
    assert not (out / SONGS_DIR / ".synth-000001.partial").exists()
    assert main(["synth", "--out", str(out), "--songs", "2", "--seconds", "2", "--seed", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixscale: error:") and "songs=1 (asked 2)" in err
