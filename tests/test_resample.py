"""``mixscale.audio.resample``: the torchaudio design it implements, its frequency
response and aliasing, shapes and bad input."""

import math

import pytest
import torch
import torchaudio.functional as AF

from mixscale.audio import RESAMPLE_KWARGS, resample
from mixscale.errors import AudioError

PAIRS = [(44100, 22050), (22050, 44100), (48000, 22050), (44100, 48000), (8000, 44100), (96000, 44100),
         (44100, 16000)]


def _tone(freq: float, sr: int, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(round(seconds * sr), dtype=torch.float64) / sr
    return torch.sin(2 * math.pi * freq * t)


def _peak_db(y: torch.Tensor) -> float:
    return 20 * math.log10(float(y.abs().max()) + 1e-30)


@pytest.mark.parametrize("from_sr, to_sr", PAIRS)
def test_equals_torchaudio_with_the_same_design(from_sr, to_sr):
    # The same kernel as torchaudio's resample with RESAMPLE_KWARGS, summed in another order:
    # float64 agrees to ~1e-7 of full scale (torchaudio rounds beta to float32).
    x = torch.randn(2, 3, 4000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = AF.resample(x, from_sr, to_sr, **RESAMPLE_KWARGS)
    got = resample(x, from_sr, to_sr)
    assert got.shape == ref.shape == (2, 3, math.ceil(4000 * to_sr / from_sr)) and got.dtype == torch.float64
    assert float((got - ref).abs().max()) < 1e-6 * float(x.abs().max())
    # float32 keeps float32 and stays within float32 rounding of the float64 result.
    got32 = resample(x.float(), from_sr, to_sr)
    assert got32.dtype == torch.float32
    assert float((got32.double() - ref).abs().max()) < 1e-5 * float(x.abs().max())


@pytest.mark.parametrize("length", [1, 2, 5, 137, 1001])
def test_short_inputs_match_torchaudio(length):
    x = torch.randn(2, length, dtype=torch.float64, generator=torch.Generator().manual_seed(length))
    for from_sr, to_sr in ((44100, 22050), (48000, 44100), (22050, 44100)):
        ref = AF.resample(x, from_sr, to_sr, **RESAMPLE_KWARGS)
        torch.testing.assert_close(resample(x, from_sr, to_sr), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("from_sr, to_sr", [(44100, 22050), (48000, 22050), (22050, 44100)])
def test_passband_is_flat_and_the_cutoff_is_the_design_rolloff(from_sr, to_sr):
    nyquist = min(from_sr, to_sr) / 2
    for freq in (100.0, 1000.0, 5000.0, 0.9 * nyquist):
        y = resample(_tone(freq, from_sr), from_sr, to_sr)[2000:-2000]
        assert abs(_peak_db(y)) < 0.1, (freq, _peak_db(y))
    # The windowed-sinc cut-off is its half-amplitude point: -6.02 dB at rolloff * Nyquist.
    y = resample(_tone(RESAMPLE_KWARGS["rolloff"] * nyquist, from_sr), from_sr, to_sr)[2000:-2000]
    assert _peak_db(y) == pytest.approx(-6.02, abs=0.05)


@pytest.mark.parametrize("from_sr, to_sr", [(44100, 22050), (48000, 22050), (96000, 44100)])
def test_tones_above_the_new_nyquist_do_not_alias(from_sr, to_sr):
    # Downsampling folds a tone above the new Nyquist onto an audible alias unless the
    # low-pass removes it: every such tone comes out more than 140 dB down.
    for freq in (1.05 * to_sr / 2, 1.3 * to_sr / 2, 0.95 * from_sr / 2):
        y = resample(_tone(freq, from_sr), from_sr, to_sr)[2000:-2000]
        assert _peak_db(y) < -140.0, (freq, _peak_db(y))


def test_upsampling_adds_no_images():
    # 22.05 -> 44.1 kHz: a 5 kHz tone must not gain an image at 22.05 - 5 = 17.05 kHz.
    y = resample(_tone(5000.0, 22050, 2.0), 22050, 44100)[4000:-4000]
    spectrum = torch.fft.rfft(y * torch.hann_window(y.shape[-1], dtype=y.dtype)).abs()
    freqs = torch.fft.rfftfreq(y.shape[-1], 1 / 44100)
    image = spectrum[(freqs > 16000) & (freqs < 18000)].max() / spectrum.max()
    assert 20 * math.log10(float(image)) < -140.0


def test_shapes_identity_and_bad_input():
    x = torch.randn(2, 441)
    assert resample(x, 44100, 44100) is x
    assert resample(torch.zeros(2, 0), 44100, 22050).shape == (2, 0)
    assert resample(torch.zeros(3, 2, 441), 44100, 22050).shape == (3, 2, 221)
    with pytest.raises(AudioError, match="floating point"):
        resample(torch.zeros(2, 100, dtype=torch.int16), 44100, 22050)
    with pytest.raises(AudioError, match="from_sr"):
        resample(x, 44100.5, 22050)
