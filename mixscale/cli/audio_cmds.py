"""Audio commands: ``analyze``, ``render`` and ``master``.

Thin over the library: ``mixscale.audio`` reads and writes files,
``mixscale.fx.loudness`` measures, ``mixscale.fx.chain.master_chain`` renders and
``mixscale.fx.mastering.fit_master_gain`` chooses the mastering settings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ORDER = 20


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="loudness, loudness range, true peak and sample peak of a file",
        description="Measure a file at its own sample rate: integrated loudness (ITU-R BS.1770), "
        "loudness range, true peak (4x oversampled) and sample peak.",
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file (WAV, FLAC, OGG, MP3, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_analyze)

    p = subparsers.add_parser(
        "render",
        help="render the master chain with the settings of a JSON file",
        description="Apply the master chain with the given settings (missing names take their "
        "defaults; `mixscale params` lists them) and write 24-bit WAV or FLAC at the working rate.",
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file to process")
    p.add_argument("--settings", required=True, metavar="S.json", help="master settings (JSON object)")
    p.add_argument("--out", required=True, metavar="OUT", help="output file, .wav or .flac")
    p.set_defaults(func=run_render)

    p = subparsers.add_parser(
        "master",
        help="master a file to a loudness target under a true-peak ceiling",
        description="Normalize loudness to the target and limit true peaks to the ceiling. Writes "
        "OUT and, next to it, the settings used (OUT with suffix .settings.json), which "
        "`mixscale render` reproduces and which you may edit.",
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file to master")
    p.add_argument("--out", required=True, metavar="OUT", help="output file, .wav or .flac")
    p.add_argument("--target-lufs", type=float, default=-14.0, metavar="LUFS",
                   help="integrated loudness target (default: -14 LUFS)")
    p.add_argument("--ceiling", type=float, default=-1.0, metavar="DBTP",
                   help="true-peak ceiling (default: -1 dBTP)")
    p.set_defaults(func=run_master)


# ---------------------------------------------------------------- analyze

def run_analyze(args) -> int:
    from mixscale.audio import audio_info, read_audio

    info = audio_info(args.audio)
    x, sr = read_audio(args.audio, sample_rate=None)
    report = {
        "file": info.path,
        "format": info.format,
        "subtype": info.subtype,
        "sample_rate": sr,
        "channels": info.channels,
        "duration_s": x.shape[-1] / sr,
        **measure(x, sr),
    }
    if args.json:
        print(json.dumps({k: _json_number(v) for k, v in report.items()}, indent=2))
    else:
        print(format_report(report))
    return 0


def measure(x, sample_rate: int) -> dict[str, float]:
    """Loudness figures of x (C, T): LUFS, LU, dBTP and dBFS (-inf for silence)."""
    import torch

    from mixscale.fx import loudness

    with torch.no_grad():
        b = x[None]  # float32: within 1e-3 LU / dB of float64, at half the memory
        return {
            "integrated_lufs": float(loudness.integrated_loudness(b, sample_rate)[0]),
            "loudness_range_lu": float(loudness.loudness_range(b, sample_rate)[0]),
            "true_peak_dbtp": _db(float(loudness.true_peak(b, sample_rate)[0])),
            "sample_peak_dbfs": _db(float(loudness.sample_peak(b)[0])),
        }


def format_report(r: dict) -> str:
    minutes, seconds = divmod(r["duration_s"], 60)
    return "\n".join([
        r["file"],
        f"  format          {r['format']} {r['subtype']}, {r['channels']} channel(s), "
        f"{r['sample_rate']} Hz, {int(minutes)}:{seconds:06.3f} ({r['duration_s']:.3f} s)",
        f"  loudness        {r['integrated_lufs']:7.2f} LUFS integrated",
        f"  loudness range  {r['loudness_range_lu']:7.2f} LU",
        f"  true peak       {r['true_peak_dbtp']:7.2f} dBTP",
        f"  sample peak     {r['sample_peak_dbfs']:7.2f} dBFS",
    ])


def _db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def _json_number(v):
    """JSON has no infinities: silence reads as null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


# ---------------------------------------------------------------- render

def run_render(args) -> int:
    from mixscale import SAMPLE_RATE, schema
    from mixscale.audio import check_output_path, read_audio

    check_output_path(args.out)
    settings = schema.load_settings(args.settings, "master")
    x, _ = read_audio(args.audio, SAMPLE_RATE)
    _render_and_write(x, SAMPLE_RATE, settings, args.out)
    print(f"wrote {args.out} ({SAMPLE_RATE} Hz, 24-bit)")
    return 0


def _render_and_write(x, sample_rate: int, settings: dict, out: str):
    """x (2, T) through the master chain; writes and returns y (2, T)."""
    import torch

    from mixscale.audio import write_audio
    from mixscale.fx.chain import master_chain

    with torch.no_grad():
        y = master_chain(x[None], sample_rate, settings)[0]
    write_audio(out, y, sample_rate)
    return y


# ---------------------------------------------------------------- master

def settings_path(out) -> Path:
    """Where ``master`` writes its settings: song.master.wav -> song.master.settings.json."""
    return Path(out).with_suffix(".settings.json")


def run_master(args) -> int:
    from mixscale import SAMPLE_RATE, schema
    from mixscale.audio import check_output_path, read_audio
    from mixscale.errors import SettingsError
    from mixscale.fx.mastering import fit_master_gain

    check_output_path(args.out)
    if not math.isfinite(args.target_lufs):
        raise SettingsError(f"--target-lufs = {args.target_lufs} is not a finite loudness in LUFS")
    schema.validate({"limiter.ceiling_dbtp": args.ceiling}, "master", source="--ceiling")
    x, _ = read_audio(args.audio, SAMPLE_RATE)
    try:
        settings = fit_master_gain(x[None], SAMPLE_RATE, schema.defaults("master"),
                                   args.target_lufs, args.ceiling)
    except SettingsError as exc:
        raise SettingsError(f"{args.audio}: {exc}") from None
    settings = {name: float(settings[name]) for name in schema.names("master")}
    y = _render_and_write(x, SAMPLE_RATE, settings, args.out)
    sidecar = settings_path(args.out)
    sidecar.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    got = measure(y, SAMPLE_RATE)
    print(f"wrote {args.out} ({SAMPLE_RATE} Hz, 24-bit): {got['integrated_lufs']:.2f} LUFS "
          f"(target {args.target_lufs:g}), true peak {got['true_peak_dbtp']:.2f} dBTP "
          f"(ceiling {args.ceiling:g})")
    print(f"wrote {sidecar} (edit it and run `mixscale render {args.audio} --settings {sidecar} "
          f"--out OUT`)")
    return 0
