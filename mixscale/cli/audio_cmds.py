"""Audio commands: ``analyze``, ``render`` and ``master``.

Thin over the library: ``mixscale.audio`` reads and writes files,
``mixscale.fx.loudness`` measures, ``mixscale.features.descriptors`` describes,
``mixscale.inference`` predicts (genre, corrective settings) and masters, and
``mixscale.fx.chain.master_chain`` renders.

``--model`` defaults to the default model (``mixscale.inference.resolve_model_path``):
the one ``mixscale quickstart`` builds. ``analyze`` without any model still measures;
``master`` without one needs ``--no-model`` (loudness and true peak only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

ORDER = 20


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="loudness, true peak and descriptors of a file; genre and corrective settings with a model",
        description="Measure a file at its own sample rate: integrated loudness (ITU-R BS.1770), "
        "loudness range, true peak (4x oversampled), sample peak and the analysis descriptors "
        "(timbre, harmony, rhythm, stereo). With a model (--model, else the default model when one "
        "exists): the genre with probabilities, the corrective master settings by schema name and "
        "the ensemble's uncertainty (fraction of each setting's range).",
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file (WAV, FLAC, OGG, MP3, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_args(p)
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
        help="master a file: the model's corrective chain, then loudness and true-peak limiting",
        description="Predict the corrective master settings with the model (--model, else the default "
        "model that `mixscale quickstart` builds), scale them by --intensity, then normalize loudness to "
        "the target and limit true peaks to the ceiling. Writes OUT and, next to it, the settings used "
        "(OUT with suffix .settings.json), which `mixscale render` reproduces and which you may edit. "
        "--no-model skips the prediction: loudness and true peak only.",
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file to master")
    p.add_argument("--out", required=True, metavar="OUT", help="output file, .wav or .flac")
    p.add_argument("--target-lufs", type=float, default=-14.0, metavar="LUFS",
                   help="integrated loudness target (default: -14 LUFS)")
    p.add_argument("--ceiling", type=float, default=-1.0, metavar="DBTP",
                   help="true-peak ceiling (default: -1 dBTP)")
    add_master_args(p)
    add_model_args(p)
    p.set_defaults(func=run_master)


def add_master_args(p) -> None:
    """--intensity and --genre, shared by master and mix."""
    p.add_argument("--intensity", type=float, default=1.0, metavar="0..1",
                   help="how much of the predicted correction to apply: 0 none, 1 all (default: 1)")
    p.add_argument("--genre", metavar="G", help="the genre if known (conditions the settings); "
                   "`mixscale params --json` lists the vocabulary under 'genres'")


def add_model_args(p) -> None:
    p.add_argument("--model", metavar="CKPT", help="checkpoint folder (default: the default model, "
                   "$MIXSCALE_HOME/models/<task>, built by `mixscale quickstart`)")
    p.add_argument("--no-model", action="store_true", help="use no model")


def load_predictor(args, task: str):
    """The Predictor for --model / the default model; None with --no-model, or for analyze
    when no default model exists (said on stderr)."""
    import sys

    from mixscale.errors import MixscaleError
    from mixscale.inference import Predictor

    if args.no_model:
        if args.model:
            raise MixscaleError("--model and --no-model exclude each other")
        return None
    try:
        return Predictor.load(args.model, task=task)
    except MixscaleError as exc:
        if args.model is None and task == "master" and args.func is run_analyze and "no master model" in str(exc):
            print(f"mixscale: {exc}; measuring only", file=sys.stderr)
            return None
        raise


# ---------------------------------------------------------------- analyze

def run_analyze(args) -> int:
    from mixscale.audio import audio_info, read_audio

    from mixscale.features.descriptors import descriptors
    from mixscale.inference import measure

    info = audio_info(args.audio)
    x, sr = read_audio(args.audio, sample_rate=None)
    predictor = load_predictor(args, "master")  # after the audio: a bad file is the one error said
    report = {
        "file": info.path,
        "format": info.format,
        "subtype": info.subtype,
        "sample_rate": sr,
        "channels": info.channels,
        "duration_s": x.shape[-1] / sr,
        **measure(x, sr),
        "descriptors": descriptors(x.numpy(), sr, source=args.audio),
    }
    if predictor is not None:
        report["model"] = predictor.path
        report.update(predictor.analyze(x, sr).to_dict())
    if args.json:
        print(json.dumps(_json_safe(report), indent=2))
    else:
        print(format_report(report))
    return 0


def format_report(r: dict) -> str:
    minutes, seconds = divmod(r["duration_s"], 60)
    d = r["descriptors"]
    lines = [
        r["file"],
        f"  format          {r['format']} {r['subtype']}, {r['channels']} channel(s), "
        f"{r['sample_rate']} Hz, {int(minutes)}:{seconds:06.3f} ({r['duration_s']:.3f} s)",
        f"  loudness        {r['integrated_lufs']:7.2f} LUFS integrated",
        f"  loudness range  {r['loudness_range_lu']:7.2f} LU",
        f"  true peak       {r['true_peak_dbtp']:7.2f} dBTP",
        f"  sample peak     {r['sample_peak_dbfs']:7.2f} dBFS",
        f"  tempo           {d['tempo_bpm']:7.1f} BPM",
        f"  harmonic share  {d['harmonic_percussive_ratio']:7.2f}   stereo correlation {d['stereo_correlation']:.2f}",
    ]
    if "genre" in r:
        top = sorted(r["genre"]["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"  model           {r['model']}")
        lines.append("  genre           " + ", ".join(f"{g} {p:.2f}" for g, p in top))
        lines.append("  corrective settings (value, ensemble uncertainty as a fraction of the range):")
        unc = r["uncertainty"] or {}
        for name, value in r["settings"].items():
            spread = f"  ± {unc[name]:.3f}" if name in unc else ""
            lines.append(f"    {name:24s} {value:10.3f} {r['units'][name]}{spread}")
    return "\n".join(lines)


def _json_safe(v):
    """JSON has no infinities: silence reads as null (recursively)."""
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


# ---------------------------------------------------------------- render

def run_render(args) -> int:
    import torch

    from mixscale import SAMPLE_RATE, schema
    from mixscale.audio import check_output_path, read_audio, write_audio
    from mixscale.fx.chain import master_chain

    check_output_path(args.out)
    settings = schema.load_settings(args.settings, "master")
    x, _ = read_audio(args.audio, SAMPLE_RATE)

    with torch.no_grad():
        y = master_chain(x[None], SAMPLE_RATE, settings)[0]
    write_audio(args.out, y, SAMPLE_RATE)
    print(f"wrote {args.out} ({SAMPLE_RATE} Hz, 24-bit)")
    return 0


# ---------------------------------------------------------------- master

def settings_path(out) -> Path:
    """Where ``master`` writes its settings: song.master.wav -> song.master.settings.json."""
    return Path(out).with_suffix(".settings.json")


def run_master(args) -> int:
    from mixscale import SAMPLE_RATE, schema
    from mixscale.audio import check_output_path, read_audio, write_audio
    from mixscale.errors import SettingsError
    from mixscale.inference import check_intensity, check_targets, genre_index, master_audio, measure

    check_output_path(args.out)
    check_targets(args.target_lufs, args.ceiling, ("--target-lufs", "--ceiling"))
    check_intensity(args.intensity, "--intensity")
    genre_index(args.genre)
    predictor = load_predictor(args, "master")
    x, _ = read_audio(args.audio, SAMPLE_RATE)
    try:
        if predictor is None:
            y, settings = master_audio(x, SAMPLE_RATE, schema.defaults("master"), args.target_lufs, args.ceiling)
        else:
            result = predictor.master(x, SAMPLE_RATE, args.target_lufs, args.ceiling, args.intensity, args.genre)
            y, settings = result.audio, result.settings
            print(f"model {predictor.path}: genre {result.analysis.genre}, intensity {args.intensity:g}")
    except SettingsError as exc:
        raise SettingsError(f"{args.audio}: {exc}") from None
    write_audio(args.out, y, SAMPLE_RATE)
    sidecar = settings_path(args.out)
    sidecar.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    got = measure(y, SAMPLE_RATE)
    print(f"wrote {args.out} ({SAMPLE_RATE} Hz, 24-bit): {got['integrated_lufs']:.2f} LUFS "
          f"(target {args.target_lufs:g}), true peak {got['true_peak_dbtp']:.2f} dBTP "
          f"(ceiling {args.ceiling:g})")
    print(f"wrote {sidecar} (edit it and run `mixscale render {args.audio} --settings {sidecar} "
          f"--out OUT`)")
    return 0
