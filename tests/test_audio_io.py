"""Audio I/O: every format and rate reads, mono becomes dual mono, resampling is
band-limited, 24-bit files round-trip, and every bad input is a named AudioError."""

from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from mixscale import SAMPLE_RATE
from mixscale.audio import (
    ClippingWarning,
    audio_info,
    read_audio,
    resample,
    write_audio,
)
from mixscale.errors import AudioError

RATES = (8000, 22050, 44100, 48000, 96000, 192000)
# (extension, soundfile format, subtype, amplitude tolerance of the codec)
FORMATS = (
    ("wav", "WAV", "PCM_16", 1e-3),
    ("flac", "FLAC", "PCM_24", 1e-4),
    ("ogg", "OGG", "VORBIS", 0.05),
    ("mp3", "MP3", "MPEG_LAYER_III", 0.1),
)
MPEG_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5, channels: int = 2) -> np.ndarray:
    """(T, C) float32 sine, the same in every channel."""
    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def tone_of(x: torch.Tensor, sr: int) -> tuple[float, float]:
    """Peak frequency (Hz) and sine amplitude of x (C, T), from a Hann-windowed FFT."""
    y = x[0].double().numpy()
    y = y[len(y) // 8: -len(y) // 8]  # away from codec and resampler edges
    w = np.hanning(len(y))
    spec = np.abs(np.fft.rfft(y * w))
    k = int(spec.argmax())
    freq = k * sr / len(y)
    amp = np.sqrt(2 * np.mean(y**2))
    return freq, amp


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("ext,fmt,subtype,tol", FORMATS, ids=[f[0] for f in FORMATS])
def test_reads_every_format_and_rate(tmp_path, ext, fmt, subtype, tol, sr):
    if fmt == "MP3" and sr not in MPEG_RATES:
        pytest.skip(f"MPEG audio has no {sr} Hz mode")
    path = tmp_path / f"tone.{ext}"
    sf.write(path, sine(1000.0, sr, 1.0), sr, format=fmt, subtype=subtype)
    x, original = read_audio(path)
    assert original == sr
    assert x.dtype == torch.float32 and x.shape[0] == 2
    assert abs(x.shape[1] - SAMPLE_RATE) <= 1200  # 1 s at the working rate; MP3 adds priming
    freq, amp = tone_of(x, SAMPLE_RATE)
    assert freq == pytest.approx(1000.0, abs=2.0)
    assert amp == pytest.approx(0.5, abs=tol)


def test_native_rate_when_sample_rate_is_none(tmp_path):
    path = tmp_path / "a.flac"
    data = sine(440.0, 96000, 0.25)
    sf.write(path, data, 96000, subtype="PCM_24")
    x, sr = read_audio(path, sample_rate=None)
    assert sr == 96000 and x.shape == (2, data.shape[0])
    assert torch.allclose(x, torch.from_numpy(data.T), atol=2**-23)


def test_mono_becomes_exact_dual_mono(tmp_path):
    path = tmp_path / "mono.wav"
    data = sine(220.0, SAMPLE_RATE, 0.5, channels=1)[:, 0]
    data[::7] *= -0.3  # not a pure tone: any per-channel processing would show
    sf.write(path, data, SAMPLE_RATE, subtype="PCM_24")
    x, _ = read_audio(path)
    expected = torch.from_numpy(sf.read(path, dtype="float32")[0])
    assert x.shape == (2, len(data))
    assert torch.equal(x[0], expected) and torch.equal(x[1], expected)


def test_more_than_two_channels_fails(tmp_path):
    path = tmp_path / "three.wav"
    sf.write(path, sine(440.0, SAMPLE_RATE, 0.1, channels=3), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"three\.wav: has 3 channels.*1 or 2"):
        read_audio(path)


def test_audio_info_reports_the_header(tmp_path):
    path = tmp_path / "m.flac"
    sf.write(path, sine(440.0, 22050, 0.5, channels=1), 22050, subtype="PCM_16")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 1, 11025)
    assert info.duration_s == pytest.approx(0.5)
    assert info.format == "FLAC"


# ---------------------------------------------------------------- resampling

@pytest.mark.parametrize("from_sr", [8000, 22050, 48000, 96000, 192000])
def test_resample_keeps_frequency_and_amplitude(from_sr):
    freq, amp, seconds = 997.0, 0.7, 0.5
    t = torch.arange(int(from_sr * seconds), dtype=torch.float64) / from_sr
    x = (amp * torch.sin(2 * math.pi * freq * t)).repeat(2, 1)
    y = resample(x, from_sr, SAMPLE_RATE)
    assert y.shape == (2, math.ceil(x.shape[1] * SAMPLE_RATE / from_sr))
    t2 = torch.arange(y.shape[1], dtype=torch.float64) / SAMPLE_RATE
    expected = amp * torch.sin(2 * math.pi * freq * t2)
    edge = SAMPLE_RATE // 50  # the first and last 20 ms see the zero padding
    assert (y[:, edge:-edge] - expected[edge:-edge]).abs().max() < 1e-5


def test_resample_rejects_what_it_cannot_represent():
    # A 30 kHz tone cannot exist at 44.1 kHz: the resampler must remove it, not alias it.
    sr = 96000
    t = torch.arange(sr // 2, dtype=torch.float64) / sr
    x = torch.sin(2 * math.pi * 30000.0 * t)[None]
    y = resample(x, sr, SAMPLE_RATE)[:, 2000:-2000]
    assert 20 * math.log10(float(y.abs().max()) + 1e-30) < -100.0


def test_resample_same_rate_is_identity():
    x = torch.randn(2, 1000)
    assert resample(x, SAMPLE_RATE, SAMPLE_RATE) is x


def test_resample_rejects_bad_rates():
    with pytest.raises(AudioError, match="from_sr"):
        resample(torch.zeros(2, 10), 0, SAMPLE_RATE)


# ---------------------------------------------------------------- writing

@pytest.mark.parametrize("ext,fmt", [("wav", "WAV"), ("flac", "FLAC"), ("WAV", "WAV")])
def test_24_bit_round_trip(tmp_path, ext, fmt):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 20000, generator=g) * 1.8 - 0.9)
    path = tmp_path / f"out.{ext}"
    write_audio(path, x, SAMPLE_RATE)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (fmt, "PCM_24", SAMPLE_RATE, 2)
    y, sr = read_audio(path)
    assert sr == SAMPLE_RATE and y.shape == x.shape
    assert (y - x).abs().max() < 1e-6


def test_write_accepts_numpy_and_any_channel_count(tmp_path):
    x = np.linspace(-0.5, 0.5, 3000, dtype=np.float32).reshape(3, 1000)
    write_audio(tmp_path / "three.flac", x, 48000)
    y, sr = sf.read(tmp_path / "three.flac", dtype="float32", always_2d=True)
    assert sr == 48000 and np.abs(y.T - x).max() < 1e-6


def test_write_clips_with_a_warning(tmp_path):
    x = torch.tensor([[0.5, 1.5, -2.0], [0.0, 0.25, -0.25]])
    with pytest.warns(ClippingWarning, match=r"2 samples beyond full scale"):
        write_audio(tmp_path / "loud.wav", x, SAMPLE_RATE)
    y, _ = sf.read(tmp_path / "loud.wav", always_2d=True)
    assert y.max() <= 1.0 and y.min() >= -1.0 and y[1, 0] == pytest.approx(1.0, abs=1e-6)


def test_write_without_clipping_warns_nothing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_audio(tmp_path / "ok.wav", torch.full((2, 10), 0.99), SAMPLE_RATE)


@pytest.mark.parametrize("name,match", [
    ("out.mp3", r"out\.mp3: cannot write extension '\.mp3'; allowed extensions: \.wav, \.flac"),
    ("out", r"out: cannot write extension '\(none\)'"),
    ("missing/out.wav", r"out\.wav: cannot write: directory .*missing does not exist"),
    ("afile.txt/out.wav", r"out\.wav: cannot write: directory .*afile\.txt is not a directory"),
    ("adir.wav", r"adir\.wav: is a directory"),
])
def test_unwritable_outputs(tmp_path, name, match):
    (tmp_path / "afile.txt").write_text("x")
    (tmp_path / "adir.wav").mkdir()
    with pytest.raises(AudioError, match=match):
        write_audio(tmp_path / name, torch.zeros(2, 100), SAMPLE_RATE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_write_into_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(AudioError, match=r"out\.wav: cannot write: permission denied"):
            write_audio(ro / "out.wav", torch.zeros(2, 100), SAMPLE_RATE)
    finally:
        ro.chmod(0o700)


def test_write_refuses_non_finite_and_bad_shapes(tmp_path):
    x = torch.zeros(2, 100)
    x[1, 5] = float("nan")
    with pytest.raises(AudioError, match=r"nan\.wav: refusing to write 1 non-finite samples"):
        write_audio(tmp_path / "nan.wav", x, SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"flat\.wav: audio to write must have shape"):
        write_audio(tmp_path / "flat.wav", torch.zeros(100), SAMPLE_RATE)
    assert not (tmp_path / "nan.wav").exists()


# ---------------------------------------------------------------- bad inputs
# Each builder writes one bad file into a folder and returns its path; BAD_INPUTS
# pairs it with a regex for the problem its message must name. test_cli.py runs the
# same cases through the command line.

def _missing(d):
    return d / "nope.wav"


def _directory(d):
    (d / "folder.wav").mkdir()
    return d / "folder.wav"


def _empty(d):
    (d / "empty.wav").write_bytes(b"")
    return d / "empty.wav"


def _not_audio(d):
    (d / "notes.wav").write_text("these are words, not samples\n" * 20)
    return d / "notes.wav"


def _no_samples(d):
    sf.write(d / "zero.wav", np.zeros((0, 2), np.float32), SAMPLE_RATE)
    return d / "zero.wav"


def _truncated(name, fmt, subtype, keep=0.5):
    def build(d):
        path = d / name
        sf.write(path, sine(440.0, SAMPLE_RATE, 2.0), SAMPLE_RATE, format=fmt, subtype=subtype)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path
    return build


def _non_finite(name, value):
    def build(d):
        data = sine(440.0, SAMPLE_RATE, 0.5)
        data[4410, 1] = value
        sf.write(d / name, data, SAMPLE_RATE, subtype="FLOAT")
        return d / name
    return build


def _tone_file(name, sr, channels=2):
    def build(d):
        sf.write(d / name, sine(100.0, sr, 0.1, channels=channels), sr)
        return d / name
    return build


BAD_INPUTS = {
    "missing": (_missing, "no such file"),
    "directory": (_directory, "is a directory"),
    "empty": (_empty, r"empty file \(0 bytes\)"),
    "not_audio": (_not_audio, "not a readable audio file"),
    "no_samples": (_no_samples, r"contains no audio \(0 samples\)"),
    "truncated_wav": (_truncated("cut.wav", "WAV", "PCM_24"), "truncated"),
    "truncated_wav_tail": (_truncated("cut_tail.wav", "WAV", "PCM_16", keep=0.999), "truncated"),
    "truncated_flac": (_truncated("cut.flac", "FLAC", "PCM_24"), "truncated"),
    "truncated_ogg": (_truncated("cut.ogg", "OGG", "VORBIS"), "truncated"),
    "truncated_ogg_tail": (_truncated("cut_tail.ogg", "OGG", "VORBIS", keep=0.98), "truncated"),
    "truncated_mp3": (_truncated("cut.mp3", "MP3", "MPEG_LAYER_III"), "truncated"),
    "nan": (_non_finite("nan.wav", np.nan), r"sample 4410 \(t = 0\.100000 s, channel 2\) is NaN"),
    "inf": (_non_finite("inf.wav", -np.inf), r"sample 4410 \(t = 0\.100000 s, channel 2\) is infinite"),
    "rate_too_low": (_tone_file("slow.wav", 4000),
                     r"sample rate 4000 Hz is out of range; allowed range \[8000, 192000\] Hz"),
    "rate_too_high": (_tone_file("fast.wav", 384000),
                      r"sample rate 384000 Hz is out of range; allowed range \[8000, 192000\] Hz"),
    "three_channels": (_tone_file("tri.wav", SAMPLE_RATE, channels=3), "has 3 channels"),
}


def make_bad_input(case: str, folder) -> tuple[str, str]:
    """Write bad input ``case`` into ``folder``: (path, regex its message must match)."""
    build, problem = BAD_INPUTS[case]
    return str(build(folder)), problem


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_named_audio_error(tmp_path, case):
    path, problem = make_bad_input(case, tmp_path)
    with pytest.raises(AudioError) as err:
        read_audio(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert re.search(problem, message), message


def test_intact_ogg_and_mp3_are_not_called_truncated(tmp_path):
    # The truncation checks must not flag complete files, long or short.
    for seconds in (0.05, 3.0):
        for ext, fmt, subtype in (("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III"),
                                  ("wav", "WAV", "PCM_24"), ("flac", "FLAC", "PCM_16")):
            path = tmp_path / f"ok{seconds}.{ext}"
            sf.write(path, sine(440.0, SAMPLE_RATE, seconds), SAMPLE_RATE, format=fmt, subtype=subtype)
            x, _ = read_audio(path)
            assert x.shape[1] >= int(SAMPLE_RATE * seconds)
