"""The master chain, block by block: a stateful processor for real-time streams.

``StreamingMasterChain(settings, sample_rate)`` runs the stages of
``mixscale.fx.chain.master_chain`` on consecutive blocks of one stereo track, each
stage carrying its state, so that the concatenated output equals the offline render::

    stream = StreamingMasterChain(settings, 44100)
    out = [stream.process(block) for block in blocks]   # block (C, N) -> (C, N')
    out.append(stream.flush())                          # the last `latency` samples
    torch.cat(out, dim=-1)  ~=  master_chain(x[None], 44100, settings)[0]

How each stage carries its state (shapes: one track, C channels):

* gains and stereo width are per sample;
* EQ: offline it is the biquad recursion (``biquad.biquad_cascade``). Here it is
  x + (h * x) with h the impulse response of H - 1 truncated to ``impulse_length``
  (``biquad.delta_impulse_response``), applied by overlap-add: each block is convolved
  with the whole h and the part that falls after the block is kept and added to the
  next ones. No latency. The truncated tail is below float32 rounding (tests/test_fx.py
  holds the two within 1e-9 in float64), so streamed and offline agree within
  ``TOLERANCE``.
* compressor: the attack/release recursion continues from the state the last block ended
  in (``dynamics.compressor_from``). No latency.
* true-peak limiter: one pass needs, for sample t, the true-peak envelope up to
  t + lookahead (+ the interpolator's 6 samples of context), so each pass delays by
  ``lookahead_samples + 6``; the envelope context, the lookahead minimum, the ramp's
  moving mean and the release recursion are carried over. The offline limiter runs up
  to ``MAX_PASSES`` passes, so the stream runs them all, in cascade.

Latency: ``latency = MAX_PASSES * (lookahead_samples(sr) + 6)`` samples (4 * 226 = 904
at 44.1 kHz, 20.5 ms), fixed: after n samples in, exactly max(0, n - latency) have come
out; ``flush()`` returns the rest, so the total length equals the input's.

Tolerance: ``TOLERANCE`` = 1e-5 absolute (full scale 1.0), checked by
``tests/test_stream.py`` for any block sizes (1 sample and odd sizes included) with the
EQ, compressor and limiter all at work. What remains is float32 rounding (the offline
EQ is one FFT over the whole track, the stream's one per block; the ramp's running sums
differ): measured about 3e-7.

The limiter's passes, and the one case outside the tolerance. Offline, pass k runs only
if the output of pass k - 1 goes over the ceiling anywhere in the whole track: a decision
on the future, which no stream can make. A pass that runs changes the audio wherever
the envelope exceeds ``ceiling - SAFETY_DB`` (0.1 dB under the ceiling). The stream
decides causally:

* pass 1 always runs. Equal to offline whenever the track goes over the ceiling (the
  limiter is working) or stays below ceiling - 0.1 dB; a track whose true peak lies in
  the 0.1 dB just under the ceiling is limited by the stream (by at most 0.1 dB,
  1.2 %) and left alone offline.
* passes 2 to 4 act from the first sample where their input goes over the ceiling on
  (the lookahead still ramps in ahead of it). Equal to offline when the pass before
  left nothing over the ceiling (the usual case: pass 1 aims 0.1 dB under it), and when
  it did, unless that pass's input came within 0.1 dB of the ceiling more than one
  lookahead (5 ms) before its first over: there offline reduces by at most 0.1 dB and
  the stream does not.

Always running passes 2 to 4 instead would differ in the usual case (pass 1's output
exceeds ceiling - 0.1 dB by a few thousandths of a dB between gain steps, which a pass
that runs corrects and offline, seeing no over, leaves): measured 5e-4.
"""

from __future__ import annotations

from typing import Mapping

import torch

from mixscale.errors import AudioError
from mixscale.fx.ballistics import instant_attack, smooth_gain_from, time_constant_coefficient
from mixscale.fx.biquad import cascade_response, delta_impulse_response, fft_size
from mixscale.fx.chain import complete_settings, effect_kwargs
from mixscale.fx.dynamics import compressor_from
from mixscale.fx.eq import eq_coefficients
from mixscale.fx.gain import db_to_amp, gain, stereo_width
from mixscale.fx.limiter import (DETECTION_OVERSAMPLING, MAX_PASSES, SAFETY_DB, lookahead_samples,
                                 moving_mean_behind, need_db, sliding_min_ahead)
from mixscale.fx.loudness import _LEFT, SPARSE_BLOCK, TAPS_PER_PHASE, _overshoot_bound, true_peak_envelope

TOLERANCE = 1e-5
# Samples of context the 12-tap interpolator reads before and after a sample.
_CONTEXT_BEFORE = _LEFT
_CONTEXT_AFTER = TAPS_PER_PHASE - 1 - _LEFT
# Blocks up to this many samples are convolved directly rather than by FFT.
DIRECT_MAX = 32


class BlockConvolver:
    """x + (h * x) by overlap-add, block by block. h (L,); blocks (C, N) -> (C, N).

    Each block is convolved with the whole h by one FFT of fft_size(N + L - 1) points in
    ``dtype`` (float32, as offline: float64 measured no closer to the offline render and
    3x slower).
    """

    def __init__(self, h: torch.Tensor, dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        self.h = h.to(dtype)
        self.pending: torch.Tensor | None = None  # (C, L - 1): contributions to samples not yet seen
        self._spectra: dict[int, torch.Tensor] = {}

    def _spectrum(self, n_fft: int) -> torch.Tensor:
        if n_fft not in self._spectra:
            self._spectra[n_fft] = torch.fft.rfft(self.h, n=n_fft)
        return self._spectra[n_fft]

    def process(self, x: torch.Tensor) -> torch.Tensor:
        C, N = x.shape
        L = self.h.shape[-1]
        if self.pending is None:
            self.pending = torch.zeros(C, L - 1, dtype=self.dtype)
        if N <= DIRECT_MAX:  # a few samples: direct convolution costs less than one long FFT
            full = torch.zeros(C, N + L - 1, dtype=self.dtype)
            for i in range(N):
                full[:, i:i + L].addcmul_(x[:, i:i + 1].to(self.dtype), self.h)
        else:
            n_fft = fft_size(N + L - 1)
            full = torch.fft.irfft(torch.fft.rfft(x.to(self.dtype), n=n_fft) * self._spectrum(n_fft),
                                   n=n_fft)[:, :N + L - 1]
        full[:, :L - 1] += self.pending
        self.pending = full[:, N:].clone()
        return x + full[:, :N].to(x.dtype)


class _LimiterPass:
    """One pass of ``limiter._limit_once`` on a stream; delays by lookahead + 6 samples.

    Buffers (positions are sample indices of the pass's input):
    ``context`` the input from env_pos - 5 (zeros before 0) for the envelope, ``delay`` the
    input not yet emitted, ``need`` the needed gain from min_pos on, ``history`` the last
    ``lookahead`` values of the lookahead minimum (for the ramp's moving mean).
    """

    def __init__(self, channels: int, sample_rate: int, ceiling_dbtp: torch.Tensor, release_coef: torch.Tensor,
                 armed: bool):
        self.lookahead = lookahead_samples(sample_rate)
        self.ceiling_dbtp, self.release_coef = ceiling_dbtp, release_coef
        self.ceiling = db_to_amp(ceiling_dbtp)
        # As offline: the envelope is exact wherever it can exceed the floor, where the pass acts.
        self.floor = db_to_amp(ceiling_dbtp - SAFETY_DB)
        self.armed = armed
        self.context = torch.zeros(channels, _CONTEXT_BEFORE)
        self.delay = torch.zeros(channels, 0)
        self.need = torch.zeros(1, 0)
        self.history: torch.Tensor | None = None
        self.state: torch.Tensor | None = None

    @property
    def latency(self) -> int:
        return self.lookahead + _CONTEXT_AFTER

    def process(self, x: torch.Tensor, final: bool = False) -> torch.Tensor:
        """x (C, N) -> the samples now ready (C, N'); ``final``: the input has ended."""
        self.context = torch.cat([self.context.to(x.dtype), x], dim=1)
        self.delay = torch.cat([self.delay.to(x.dtype), x], dim=1)
        # Envelope of the samples whose interpolation context is complete (zeros after the end).
        ready = self.context.shape[1] - _CONTEXT_BEFORE - (0 if final else _CONTEXT_AFTER)
        ready = max(0, ready)
        # Where no interpolated value can exceed the floor (unarmed: the ceiling), the pass
        # needs no gain: skip the envelope, as the offline limiter skips such blocks.
        quiet = float(self.context.abs().amax()) * _overshoot_bound(DETECTION_OVERSAMPLING) <= float(
            self.floor if self.armed else self.ceiling)
        if quiet:
            envelope = None
            need = torch.zeros(1, ready, dtype=x.dtype)
        else:
            # (The floor's block skipping only pays on contexts longer than its blocks.)
            floor = self.floor if self.context.shape[1] > SPARSE_BLOCK else None
            envelope = true_peak_envelope(self.context[None], DETECTION_OVERSAMPLING,
                                          floor=floor)[:, _CONTEXT_BEFORE:_CONTEXT_BEFORE + ready]
            need = need_db(envelope, self.ceiling_dbtp)
        self.context = self.context[:, ready:]
        if not self.armed and envelope is not None:
            # Unarmed, the pass acts from the first sample over the ceiling on (see the module docstring).
            over = (envelope[0] > self.ceiling).nonzero()
            first = int(over[0]) if over.numel() else envelope.shape[1]
            need[:, :first] = 0.0
            self.armed = over.numel() > 0
        self.need = torch.cat([self.need.to(x.dtype), need], dim=1)
        # Minimum over [t, t + lookahead]: past the end of the track it counts as 0 dB.
        width = self.lookahead + 1
        minimum = sliding_min_ahead(self.need, width)
        if not final:
            minimum = minimum[:, :max(0, minimum.shape[1] - self.lookahead)]
        n = minimum.shape[1]
        self.need = self.need[:, n:]
        if n == 0:
            return x[:, :0]
        # Mean over [t - lookahead, t]: the first value is held before the start, as offline.
        if self.history is None:
            ramp = moving_mean_behind(minimum, width)
        else:
            ramp = moving_mean_behind(torch.cat([self.history, minimum], dim=1), width)[:, -n:]
        self.history = torch.cat([self.history if self.history is not None else minimum[:, :0], minimum],
                                 dim=1)[:, -self.lookahead:]
        gain_db, self.state = smooth_gain_from(ramp, instant_attack(self.release_coef), self.release_coef,
                                               self.state)
        out = self.delay[:, :n] * db_to_amp(gain_db)
        self.delay = self.delay[:, n:]
        return out


class StreamingMasterChain:
    """``master_chain`` on consecutive blocks of one track, with a fixed latency.

    settings: master settings by schema name (floats; missing ones take defaults).
    ``process(block (C, N))`` -> (C, N'), N' = the samples that became ready;
    ``flush()`` -> (C, the rest). The concatenation equals
    ``master_chain(x[None], sample_rate, settings)[0]`` within ``TOLERANCE`` (see the module
    docstring for the one limiter case outside it). ``latency`` is in samples.
    """

    def __init__(self, settings: Mapping, sample_rate: int, channels: int = 2):
        if sample_rate <= 0:
            raise AudioError(f"sample_rate must be > 0 Hz; got {sample_rate}")
        if channels != 2:
            raise AudioError(f"the master chain is stereo: channels must be 2; got {channels}")
        self.sample_rate, self.channels = sample_rate, channels
        proto = torch.zeros(1, dtype=torch.float32)
        self.settings = s = complete_settings(settings, "master", (1,), proto)
        eq = effect_kwargs(s, "eq.")
        coeffs = eq_coefficients(sample_rate, eq)
        h = delta_impulse_response(sample_rate, lambda n: cascade_response(coeffs, n), torch.float32)[0]
        self._eq = BlockConvolver(h)
        self._comp = effect_kwargs(s, "comp.")
        self._comp_state: torch.Tensor | None = None
        release = time_constant_coefficient(s["limiter.release_ms"], sample_rate)
        self._passes = [_LimiterPass(channels, sample_rate, s["limiter.ceiling_dbtp"], release, armed=k == 0)
                        for k in range(MAX_PASSES)]
        self.latency = sum(p.latency for p in self._passes)
        self.samples_in = 0
        self.samples_out = 0
        self._flushed = False

    def _check(self, block) -> torch.Tensor:
        block = torch.as_tensor(block, dtype=torch.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise AudioError(f"a block must be (C={self.channels}, N); got shape {tuple(block.shape)}")
        if not torch.isfinite(block).all():
            raise AudioError("a block holds NaN or infinite samples")
        return block

    def process(self, block) -> torch.Tensor:
        """One block (C, N) in; the output samples now ready (C, N') out (float32)."""
        if self._flushed:
            raise AudioError("the stream was flushed; start a new StreamingMasterChain for a new track")
        block = self._check(block)
        self.samples_in += block.shape[1]
        return self._run(block, final=False)

    def flush(self) -> torch.Tensor:
        """End of input: the last ``latency`` samples (fewer for a shorter track), (C, n)."""
        if self._flushed:
            raise AudioError("the stream was already flushed")
        self._flushed = True
        return self._run(torch.zeros(self.channels, 0), final=True)

    def _run(self, block: torch.Tensor, final: bool) -> torch.Tensor:
        s = self.settings
        y = gain(block[None], gain_db=s["input.gain_db"])[0]
        y = self._eq.process(y)
        y, self._comp_state = compressor_from(y[None], self.sample_rate, self._comp_state, **self._comp)
        y = stereo_width(y, amount=s["width.amount"])
        y = gain(y, gain_db=s["limiter.gain_db"])[0]
        for p in self._passes:
            y = p.process(y, final=final)
        self.samples_out += y.shape[1]
        return y
