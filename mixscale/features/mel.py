"""Batched log-mel spectrograms in torch, on CPU or GPU.

``LogMel`` computes the same power mel spectrogram as
``librosa.feature.melspectrogram`` with the same parameters (periodic Hann window,
centred frames with zero padding, power 2, Slaney mel scale and Slaney area
normalization, librosa's defaults ``htk=False, norm="slaney"``), then converts it to
decibels like ``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=None)``. The test
suite checks both against librosa.

Channels: ``channels="mono"`` averages the channels first (as ``librosa.load``'s mono
downmix does) and returns (B, M, F); ``channels="stereo"`` keeps one spectrogram per
channel and returns (B, C, M, F).

Shapes (legend in ``mixscale``): x (B, C, T) or (B, T) -> (B, M, F) or (B, C, M, F),
with F = 1 + T // hop.

Views: ``power(x, mix)`` with a (K, C) table of coefficients returns the power of the
K linear mixes of the channels, (B, K, M, F) (the stereo front end's left, right, mid
and side). The STFT is linear, so the mixes are taken of the C channel spectra: C FFTs
instead of K. Their powers come from a basis of mel products: each channel's power P_c
and, for each pair of channels that some row mixes, the power D_cd of the difference
of their spectra. Since 2 Re(X_c conj X_d) = P_c + P_d - D_cd,

    |sum_c w_c X_c|^2 = sum_c w_c (sum_d w_d) P_c - sum_{c<d} w_c w_d D_cd,

and the filterbank is linear, so each view's mel power is that combination of the
basis's mel powers (coefficients in float64): for the four stereo views 3 mel products
instead of 4. Exactness where it matters: a row with one nonzero coefficient (left,
right) has coefficient 0 on every other basis term, and a row (a, -a) (side) has 0 on
P_c and P_d, so these views are their own mel products scaled by w^2, exact up to the
rounding of one product; the side of dual mono is exactly 0 (equal spectra subtract to
0), so silence stays at the floor. A row that adds channels (mid) is a sum of basis
terms with rounding relative to P_c + P_d: when that row nearly cancels (mid of
polarity-inverted channels) its power can sit at the float32 rounding of the channels'
power, about 1e-7 (-70 dB; the tests bound it by -60 dB), instead of at the floor. For
the dB features that is a view 70 dB below its channels either way. ``mix_basis``
returns the pairs and coefficients; the test suite checks these cases.

How it is computed (CPU cost on one core measured by ``bench/infer.py``): frames are
cut and windowed as ``torch.stft(center=True, pad_mode="constant")`` does, one real FFT
per frame gives (F, K) complex bins stored as interleaved (re, im) pairs; their squares go
straight into the filterbank product with each filter's weight repeated for re and im
(so re^2 + im^2 is summed by the matrix product, no strided passes). The filterbank is
sparse (each FFT bin feeds at most two mel bands), so the product is taken per group of
``MEL_GROUP`` consecutive bands over only the bins they touch (zeros skipped: equal up
to the summation order). On the CPU, frames go through in chunks of about
``CHUNK_FRAMES`` (over channels: several short items, or a range of frames of one item),
so that the FFT's output, the squares and the products stay in cache (one FFT call over a
whole batch of 3 stereo windows of 10 s, 5172 frames of 1024, costs about 1.5 us per frame,
in chunks of 512 to 1724 frames under 1 us).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from mixscale import SAMPLE_RATE
from mixscale.errors import MixscaleError

CHANNEL_MODES = ("mono", "stereo")
MEL_GROUP = 8         # mel bands per filterbank product (fewer: more, smaller products)
CHUNK_FRAMES = 512    # CPU: frames (over channels) per chunk: FFT, squares and products stay in cache


@dataclass
class MelConfig:
    """Log-mel parameters. ``f_max`` None means the Nyquist frequency."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    channels: str = "mono"
    # Floor of the power before the logarithm (librosa's ``amin``): -100 dB.
    amin: float = 1e-10

    def __post_init__(self) -> None:
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        checks = [
            ("sample_rate", self.sample_rate, self.sample_rate > 0, "> 0 Hz"),
            ("n_fft", self.n_fft, self.n_fft >= 16, ">= 16 samples"),
            ("hop", self.hop, 1 <= self.hop <= self.n_fft, f"[1, n_fft={self.n_fft}] samples"),
            ("n_mels", self.n_mels, 1 <= self.n_mels <= self.n_fft // 2 + 1, f"[1, {self.n_fft // 2 + 1}]"),
            ("f_min", self.f_min, 0 <= self.f_min < f_max, f"[0, f_max={f_max:g}) Hz"),
            ("f_max", f_max, self.f_min < f_max <= nyquist, f"(f_min={self.f_min:g}, {nyquist:g}] Hz"),
            ("amin", self.amin, self.amin > 0, "> 0"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise MixscaleError(f"mel config: {name} = {value!r} is out of range; allowed {allowed}")
        if self.channels not in CHANNEL_MODES:
            raise MixscaleError(f"mel config: channels = {self.channels!r}; allowed {', '.join(CHANNEL_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MelConfig":
        return cls(**d)


class LogMel(nn.Module):
    """Log-mel spectrogram in dB: (B, C, T) -> (B, M, F), or (B, C, M, F) per channel.

    ``power(x)`` returns the mel power before the logarithm (what librosa's
    ``melspectrogram`` returns). The window and filterbank are non-persistent
    buffers: they follow ``.to(device)`` but are not written into checkpoints.
    """

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = cfg = config or MelConfig()
        f_max = cfg.sample_rate / 2 if cfg.f_max is None else cfg.f_max
        fbank = AF.melscale_fbanks(
            cfg.n_fft // 2 + 1, cfg.f_min, f_max, cfg.n_mels, cfg.sample_rate, norm="slaney", mel_scale="slaney"
        ).T.contiguous()  # (M, n_fft // 2 + 1)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        # Per group of bands: the (re, im) columns [2 lo, 2 hi) of the bins it touches and
        # its weights (bands, 2 (hi - lo)), each bin's weight repeated for re and im.
        self.groups: list[tuple[int, int]] = []
        for i, first in enumerate(range(0, cfg.n_mels, MEL_GROUP)):
            rows = fbank[first:first + MEL_GROUP]
            used = (rows != 0).any(dim=0).nonzero()[:, 0]
            lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
            self.groups.append((2 * lo, 2 * hi))
            self.register_buffer(f"group{i}", rows[:, lo:hi].repeat_interleave(2, dim=1), persistent=False)

    def power(self, x: torch.Tensor, mix: Sequence[Sequence[float]] | None = None) -> torch.Tensor:
        """Mel power spectrogram: (B, C, T) -> (B, M, F) (mono) or (B, C, M, F) (stereo).

        ``mix`` (stereo only): K rows of C coefficients; returns the power of the K mixes
        of the channels, (B, K, M, F).
        """
        mel = self._power(x, mix)
        return mel if mix is None else mel.clamp_min(0.0)    # a sum of basis terms may round below 0

    def forward(self, x: torch.Tensor, mix: Sequence[Sequence[float]] | None = None) -> torch.Tensor:
        """Log-mel in dB (10 log10 of the power, floored at ``amin``); shapes as ``power``."""
        return 10.0 * torch.log10(self._power(x, mix).clamp_min(self.config.amin))

    def _power(self, x: torch.Tensor, mix: Sequence[Sequence[float]] | None) -> torch.Tensor:
        """``power`` before the floor at 0 of the views (``forward`` floors at ``amin``)."""
        if x.ndim == 2:
            x = x.unsqueeze(1)
        if x.ndim != 3:
            raise MixscaleError(f"LogMel expects audio of shape (B, C, T) or (B, T), got {tuple(x.shape)}")
        mono = self.config.channels == "mono"
        if mix is not None and (mono or any(len(row) != x.shape[1] for row in mix)):
            raise MixscaleError(f"LogMel: mix needs channels='stereo' and rows of {x.shape[1]} coefficients "
                                f"(one per channel); got channels={self.config.channels!r}, mix={mix!r}")
        if mono:
            x = x.mean(dim=1, keepdim=True)
        x = x.to(self.window.dtype)
        if mix is None:
            mel = self._basis_power(x, [])
            return mel[:, 0] if mono else mel
        pairs, coef = mix_basis(mix)
        basis = self._basis_power(x, pairs)                                  # (B, C + pairs, M, F)
        return torch.einsum("kj,bjmf->bkmf", coef.to(basis), basis)

    def num_frames(self, num_samples: int) -> int:
        """F for an input of T samples (centred frames)."""
        return 1 + num_samples // self.config.hop

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Centred frames, zero-padded at the ends, not windowed: (..., T) -> (..., F, n_fft) (a view
        of the padded audio)."""
        n = self.config.n_fft
        return F.pad(x, (n // 2, n // 2)).unfold(-1, n, self.config.hop)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Centred, Hann-windowed frames' FFT: (..., T) -> (..., F, 2 (n_fft // 2 + 1)) as (re, im) pairs."""
        return self._spectrum_of_frames(self.frames(x))

    def _spectrum_of_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., F, n_fft) frames -> (..., F, 2 (n_fft // 2 + 1)) (re, im) pairs of the windowed frames."""
        return torch.view_as_real(torch.fft.rfft(frames * self.window)).flatten(-2)

    def _basis_power(self, x: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
        """(B, C, T) -> (B, C + len(pairs), M, F): the mel power of each channel, then of the
        difference of each pair's spectra."""
        b, c, t = x.shape
        f = self.num_frames(t)
        out = x.new_empty(b, c + len(pairs), self.config.n_mels, f)
        if out.numel() == 0:
            return out
        frames = self.frames(x)                                             # (B, C, F, n_fft) view
        per, step = b, f
        if x.device.type == "cpu":      # several short items, or frame ranges of one long item
            per = max(1, CHUNK_FRAMES // (c * f))
            step = f if per > 1 else max(1, CHUNK_FRAMES // c)
        for i in range(0, b, per):
            for f0 in range(0, f, step):
                spec = self._spectrum_of_frames(frames[i:i + per, :, f0:f0 + step])   # (n, C, nf, 2K)
                at = (slice(i, i + per), slice(None), slice(None), slice(f0, f0 + step))
                out[at][:, :c] = self._mel_of_squares(spec.square())
                for j, (p, q) in enumerate(pairs):
                    out[at][:, c + j] = self._mel_of_squares((spec[:, p] - spec[:, q]).square())
        return out

    def _mel_of_squares(self, squares: torch.Tensor) -> torch.Tensor:
        """Squared (re, im) pairs (..., F, 2K) -> mel power (..., M, F)."""
        frames_last = squares.flatten(0, -3).transpose(-1, -2)             # (N, 2K, F)
        n = frames_last.shape[0]
        # bmm with the weights expanded (a view): matmul's broadcasting costs more per call.
        mel = torch.cat([torch.bmm(getattr(self, f"group{i}").expand(n, -1, -1), frames_last[:, lo:hi])
                         for i, (lo, hi) in enumerate(self.groups)], dim=-2)
        return mel.unflatten(0, squares.shape[:-2])


def mix_basis(mix: Sequence[Sequence[float]]) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Rows of C mix coefficients (K, C) -> the channel pairs whose difference power the
    views need, and the (K, C + pairs) float64 coefficients of each view over the basis
    (P_0 .. P_{C-1}, then D_pq per pair): w_c * sum_d w_d on P_c, -w_p * w_q on D_pq."""
    rows = [[float(w) for w in row] for row in mix]
    c = len(rows[0]) if rows else 0
    pairs = sorted({(p, q) for row in rows for p in range(c) for q in range(p + 1, c) if row[p] * row[q] != 0})
    coef = [[w * sum(row) for w in row] + [-row[p] * row[q] for p, q in pairs] for row in rows]
    return pairs, torch.tensor(coef, dtype=torch.float64).reshape(len(rows), c + len(pairs))
