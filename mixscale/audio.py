"""Audio files in and out.

``read_audio`` reads anything libsndfile decodes (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...)
at 8 kHz to 192 kHz, makes mono dual mono, and resamples to the working rate.
``write_audio`` writes 24-bit PCM WAV or FLAC, chosen by the output extension.

Every problem with a file is an ``AudioError`` whose one-line message names the file
and the problem: a missing path, a directory, an empty file, a file that is not audio,
a truncated file, a NaN or infinite sample, too many channels, a rate out of range, an
unwritable output.

Shapes: C channels, T samples (legend in ``mixscale``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from mixscale import SAMPLE_RATE
from mixscale.errors import AudioError

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
# Output container by extension; the sample format is always 24-bit PCM.
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
WRITE_SUBTYPE = "PCM_24"

# Band-limited resampling: Kaiser-windowed sinc with 64 zero crossings, a cut-off at
# 0.9476 of the lower Nyquist frequency and beta 14.77 (the "kaiser_best" design of
# resampy/librosa). Measured on 96 kHz -> 44.1 kHz: flat within 0.09 dB to 20 kHz,
# images/aliases above the new Nyquist down by more than 150 dB; 3 min of stereo
# 192 kHz audio resamples in about 1 s on 2 CPU cores, so the best design costs little.
RESAMPLE_KWARGS = dict(
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    resampling_method="sinc_interp_kaiser",
    beta=14.769656459379492,
)


class ClippingWarning(UserWarning):
    """Samples beyond full scale were clipped when writing a fixed-point file."""


# ---------------------------------------------------------------- resampling
#
# ``resample`` computes exactly what ``torchaudio.functional.resample(x, from_sr, to_sr,
# **RESAMPLE_KWARGS)`` computes (the same kernel; outputs equal within float rounding,
# which the tests check), in a faster arrangement. With the rates reduced by their gcd
# to ``orig`` : ``new``, output sample ``b * new + q`` is the dot product of kernel row q
# (K taps) with the input from ``b * orig`` on. torchaudio runs that as a one-channel
# convolution with stride ``orig``, which CPUs run poorly when ``orig`` and ``new`` are
# small (44.1 -> 22.05 kHz is 2 : 1: 274 taps on one channel). Here the input is cut into
# blocks of P = m * orig samples (P channels) and m consecutive kernel rows become the
# m * new output channels of a stride-1 convolution over blocks: the same products,
# summed in another order, as one wide matrix product. m makes m * new >= RESAMPLE_PHASES.
# The blocks are read in place as a channels-last (N, P, 1, blocks) image (a block's P
# samples are adjacent in memory, which is the channels-last order), so no copy is made
# and the CPU's 2-D convolution runs its kernel vectorized over channels (measured on one
# core, 30 s of stereo 44.1 -> 22.05 kHz: 110 ms one-channel, 15.5 ms blocked 1-D, 9.5 ms
# channels-last 2-D). The kernel is computed in float64 once per (rates, dtype, device)
# and cached.

RESAMPLE_PHASES = 16


@functools.lru_cache(maxsize=32)
def _resample_kernel(orig: int, new: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, int, int]:
    """The blocked kernel (m * new, m * orig, 1, J) (channels last), its left padding ``width`` and m.

    Rows are torchaudio's windowed-sinc design for ``RESAMPLE_KWARGS``: kernel row q is
    sinc(pi t) * kaiser(t) * base / orig at t = base * (i / orig - q / new) for taps
    i in [-width, width + orig), clamped to +-lowpass_filter_width zero crossings, with
    base = min(orig, new) * rolloff.
    """
    zeros, beta = RESAMPLE_KWARGS["lowpass_filter_width"], RESAMPLE_KWARGS["beta"]
    base = min(orig, new) * RESAMPLE_KWARGS["rolloff"]
    width = math.ceil(zeros * orig / base)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = ((taps[None, :] - torch.arange(new, dtype=torch.float64)[:, None] / new) * base).clamp(-zeros, zeros)
    window = torch.i0(beta * (1 - (t / zeros) ** 2).sqrt()) / torch.i0(torch.tensor(beta, dtype=torch.float64))
    rows = torch.sinc(t) * window * (base / orig)                               # (new, K)
    m = max(1, math.ceil(RESAMPLE_PHASES / new))
    k, block = rows.shape[1], m * orig
    blocks = math.ceil((k + (m - 1) * orig) / block)
    kernel = torch.zeros(m * new, blocks * block, dtype=torch.float64)
    for r in range(m):          # output block row r reads the input from r * orig on
        kernel[r * new:(r + 1) * new, r * orig:r * orig + k] = rows
    kernel = kernel.reshape(m * new, blocks, block).transpose(1, 2).contiguous()  # (m*new, P, J)
    # Channels last as (m*new, P, 1, J) with the size-1 axis's stride P * J (a permuted view
    # with another stride there counts as channels last too, but the convolution then
    # picks a slower kernel: 14 ms instead of 9.5 ms above).
    kernel = kernel.to(device=device, dtype=dtype)[:, :, None, :]
    return kernel.contiguous(memory_format=torch.channels_last), width, m


def resample(x: torch.Tensor, from_sr: int, to_sr: int) -> torch.Tensor:
    """Band-limited resampling of (..., T) to (..., ceil(T * to_sr / from_sr)); same dtype.

    The design is ``RESAMPLE_KWARGS`` (see there); the arrangement is described above.
    """
    for name, rate in (("from_sr", from_sr), ("to_sr", to_sr)):
        if int(rate) != rate or rate <= 0:
            raise AudioError(f"resample: {name} = {rate!r} must be a positive whole number of Hz")
    if from_sr == to_sr:
        return x
    if not x.is_floating_point():
        raise AudioError(f"resample: audio dtype {x.dtype} is not floating point; allowed float32 or float64")
    gcd = math.gcd(int(from_sr), int(to_sr))
    orig, new = int(from_sr) // gcd, int(to_sr) // gcd
    kernel, width, m = _resample_kernel(orig, new, x.dtype, str(x.device))
    shape, length = x.shape, x.shape[-1]
    if length == 0 or x.numel() == 0:
        return x.new_zeros(*shape[:-1], math.ceil(new * length / orig))
    flat = x.reshape(-1, length)
    block, out_blocks = kernel.shape[1], math.ceil((length // orig + 1) / m)
    in_blocks = out_blocks + kernel.shape[3] - 1
    padded = torch.nn.functional.pad(flat, (width, in_blocks * block - length - width))
    blocks = padded.reshape(flat.shape[0], in_blocks, 1, block).permute(0, 3, 2, 1)  # (N, P, 1, in_blocks)
    y = torch.nn.functional.conv2d(blocks, kernel)[:, :, 0]                          # (N, m * new, out_blocks)
    y = y.transpose(1, 2).reshape(flat.shape[0], -1)[:, :math.ceil(new * length / orig)]
    return y.reshape(*shape[:-1], y.shape[-1])


def check_sample_rate(sample_rate: int, source: str) -> None:
    """Raise ``AudioError`` unless ``sample_rate`` lies in [8000, 192000] Hz."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{source}: sample rate {sample_rate} Hz is out of range; "
            f"allowed range [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz"
        )


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: rate in Hz, channel count, length in samples."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path) -> AudioInfo:
    """Check a file's path and header (rate, channels, container completeness).

    Raises ``AudioError`` naming the file; ``read_audio`` runs the same checks.
    """
    path = os.fspath(path)
    _check_input_path(path)
    info = _open_info(path)
    check_sample_rate(info.samplerate, path)
    if info.channels not in (1, 2):
        raise AudioError(
            f"{path}: has {info.channels} channels; mixscale reads mono or stereo (1 or 2 channels)"
        )
    _check_container_complete(path)
    return AudioInfo(path, info.samplerate, info.channels, info.frames, info.format, info.subtype)


OGG_END_TRIM_SAMPLES = 8192  # the largest Vorbis block (Opus frames are shorter)


def read_audio(path, sample_rate: int | None = SAMPLE_RATE) -> tuple[torch.Tensor, int]:
    """Read an audio file as stereo float32 at ``sample_rate``.

    Returns ``(x, original_sample_rate)`` with x of shape (2, T): mono becomes dual
    mono, and x is resampled from the file's rate unless ``sample_rate`` is None.
    Raises ``AudioError`` naming the file for anything that is not complete, finite,
    mono or stereo audio at 8 kHz to 192 kHz.
    """
    info = audio_info(path)
    path = info.path
    data = _decode(path)  # (T, C)
    # Ogg streams may end a few samples short of the length derived from the last page's
    # granule position (encoders' end trimming); less than one Vorbis block is not a cut.
    # A cut Ogg file is caught by its missing end-of-stream page (``_check_container_complete``).
    slack = OGG_END_TRIM_SAMPLES if info.format == "OGG" else 0
    if data.shape[0] < info.frames - slack:
        raise AudioError(
            f"{path}: truncated: decoded {data.shape[0]} of the {info.frames} samples its header declares"
        )
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio (0 samples)")
    _check_finite(path, data, info.sample_rate)

    x = torch.from_numpy(np.ascontiguousarray(data.T))
    if x.shape[0] == 1:
        x = x.repeat(2, 1)
    if sample_rate is not None:
        check_sample_rate(sample_rate, "working sample rate")
        x = resample(x, info.sample_rate, sample_rate)
    return x.contiguous(), info.sample_rate


def _check_input_path(path: str) -> None:
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (cannot read)")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _open_info(path: str):
    try:
        with _quiet_decoder(path):
            return sf.info(path)
    except sf.LibsndfileError as exc:
        raise AudioError(f"{path}: not a readable audio file ({_sf_reason(exc)})") from None
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"{path}: cannot open ({_one_line(exc)})") from None


def _decode(path: str) -> np.ndarray:
    try:
        with _quiet_decoder(path):
            data, _ = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioError(f"{path}: truncated or corrupt audio data ({_sf_reason(exc)})") from None
    except (sf.SoundFileError, OSError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot decode audio data ({_one_line(exc)})") from None
    return data


def _check_finite(path: str, data: np.ndarray, sample_rate: int) -> None:
    """data (T, C): name the first non-finite sample by index, time and channel."""
    finite = np.isfinite(data)
    if finite.all():
        return
    frame, channel = np.argwhere(~finite)[0]
    value = data[frame, channel]
    kind = "NaN" if np.isnan(value) else "infinite"
    raise AudioError(
        f"{path}: sample {frame} (t = {frame / sample_rate:.6f} s, channel {channel + 1}) is {kind}; "
        f"audio must be finite ({int((~finite).sum())} non-finite in all)"
    )


def _sf_reason(exc: Exception) -> str:
    reason = getattr(exc, "error_string", None) or str(exc)
    return _one_line(reason).removeprefix("Error : ").strip()


def _one_line(text) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def _quiet_decoder(path: str):
    """Silence mpg123, which prints warnings straight to the C stderr (MP3 only).

    libsndfile reports every real problem as an error; mpg123's messages only
    repeat them, and would break the command line's one-line error contract.
    """
    if not path.lower().endswith((".mp3", ".mp2", ".mpga")):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# ---------------------------------------------------------------- truncation checks
# libsndfile silently shortens a WAV whose data chunk is cut, and reads the complete
# pages of a cut Ogg file without complaint, so both containers are checked here.
# FLAC and MP3 truncation shows up as a decoder error or as fewer samples than the
# header (STREAMINFO, Xing/LAME frame count) declares, checked in ``read_audio``.

def _check_container_complete(path: str) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic == b"RIFF":
            _check_riff(path, fh)
        elif magic == b"OggS":
            _check_ogg(path, fh)


def _check_riff(path: str, fh) -> None:
    """Compare a WAV's declared data chunk size with the bytes the file holds."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(12)
    while True:
        header = fh.read(8)
        if len(header) < 8:
            return  # no data chunk: libsndfile decides whether this is audio
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        start = fh.tell()
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF mean "size unknown" (streamed or RF64-style files).
            if chunk_size not in (0, 0xFFFFFFFF) and size - start < chunk_size:
                raise AudioError(
                    f"{path}: truncated: the WAV header declares {chunk_size} bytes of audio "
                    f"data but the file holds {size - start}"
                )
            return
        fh.seek(start + chunk_size + (chunk_size & 1))


_OGG_TAIL = 65_536 + 27 + 255  # one maximal page and its header


def _check_ogg(path: str, fh) -> None:
    """The last intact Ogg page must carry the end-of-stream flag."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(max(0, size - 2 * _OGG_TAIL))
    tail = fh.read()
    pos = len(tail)
    while True:
        pos = tail.rfind(b"OggS", 0, pos)
        if pos < 0:
            return  # no intact page in the tail: let the decoder judge
        page = _ogg_page(tail, pos)
        if page is not None:
            if not page[5] & 0x04:
                raise AudioError(
                    f"{path}: truncated: the Ogg stream ends without its end-of-stream page"
                )
            return


def _ogg_page(buf: bytes, pos: int) -> bytes | None:
    """The complete page at ``pos`` if its length and CRC check out, else None."""
    if len(buf) - pos < 27 or buf[pos + 4] != 0:
        return None
    nseg = buf[pos + 26]
    if len(buf) - pos < 27 + nseg:
        return None
    end = pos + 27 + nseg + sum(buf[pos + 27: pos + 27 + nseg])
    if end > len(buf):
        return None
    page = buf[pos:end]
    crc = struct.unpack("<I", page[22:26])[0]
    return page if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == crc else None


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
    return crc


# ---------------------------------------------------------------- writing

def check_output_path(path) -> str:
    """Raise ``AudioError`` unless ``path`` has a writable extension and directory.

    Commands call this before doing any work, so a bad ``--out`` fails at once.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in WRITE_FORMATS:
        allowed = ", ".join(WRITE_FORMATS)
        raise AudioError(f"{path}: cannot write extension {ext or '(none)'!r}; allowed extensions: {allowed}")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory; give an output file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        problem = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise AudioError(f"{path}: cannot write: directory {directory} {problem}")
    if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise AudioError(f"{path}: cannot write: permission denied")
    return path


def write_audio(path, x, sample_rate: int) -> None:
    """Write x (C, T) (a tensor or array, normally C = 2) as 24-bit PCM WAV or FLAC.

    The container follows the extension (``.wav`` or ``.flac``). Samples beyond full
    scale are clipped, with a ``ClippingWarning``. A failed write removes the
    partial file it created.
    """
    path = check_output_path(path)
    check_sample_rate(int(sample_rate), path)
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    data = np.asarray(x, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
        raise AudioError(f"{path}: audio to write must have shape (channels, samples); got {tuple(data.shape)}")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: refusing to write {int((~np.isfinite(data)).sum())} non-finite samples")
    over = int((np.abs(data) > 1.0).sum())
    if over:
        peak_db = 20 * math.log10(float(np.abs(data).max()))
        warnings.warn(
            f"{path}: {over} samples beyond full scale (peak {peak_db:+.2f} dBFS) were clipped",
            ClippingWarning,
            stacklevel=2,
        )
        data = np.clip(data, -1.0, 1.0)

    fmt = WRITE_FORMATS[os.path.splitext(path)[1].lower()]
    existed = os.path.exists(path)
    try:
        sf.write(path, data.T, int(sample_rate), format=fmt, subtype=WRITE_SUBTYPE)
    except (sf.SoundFileError, OSError, RuntimeError) as exc:
        if not existed and os.path.exists(path):
            os.unlink(path)  # leave no partial file behind
        if isinstance(exc, sf.LibsndfileError):
            reason = _sf_reason(exc)
        else:
            reason = _one_line(getattr(exc, "strerror", None) or exc)
        raise AudioError(f"{path}: cannot write ({reason})") from None
