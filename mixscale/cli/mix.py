"""``mixscale mix STEM... --out OUT``: per-stem and master settings from the model, rendered.

Writes OUT and, next to it, the settings (OUT with suffix .settings.json):
``{"stems": [{"name": file, "settings": {...}}], "master": {...}}``. Edit them and pass
them back with ``--settings`` to render the same stems without a model.
"""

from __future__ import annotations

import json

ORDER = 25


def register(subparsers) -> None:
    from mixscale.cli.audio_cmds import add_master_args, add_model_args

    p = subparsers.add_parser(
        "mix",
        help="mix stems: per-stem gain, pan, EQ and compression, then the master chain",
        description="Predict per-stem settings (gain, pan, EQ, compression) and master settings with a mix "
        "model (--model, else the default mix model that `mixscale quickstart` builds), scale them by "
        "--intensity, render the mix, normalize its loudness to the target and limit true peaks to the "
        "ceiling. Stems may differ in length (shorter ones are padded with silence) and come in any "
        "order. With --settings S.json (as written next to a previous OUT), renders those settings "
        "exactly, without a model.",
    )
    p.add_argument("stems", nargs="+", metavar="STEM", help="stem audio files")
    p.add_argument("--out", required=True, metavar="OUT", help="output file, .wav or .flac")
    p.add_argument("--settings", metavar="S.json", help="render these settings instead of predicting")
    p.add_argument("--target-lufs", type=float, default=-14.0, metavar="LUFS",
                   help="integrated loudness target (default: -14 LUFS)")
    p.add_argument("--ceiling", type=float, default=-1.0, metavar="DBTP", help="true-peak ceiling (default: -1 dBTP)")
    add_master_args(p)
    add_model_args(p)
    p.set_defaults(func=run)


def load_mix_settings(path: str, stem_count: int) -> tuple[list[dict], dict]:
    """Per-stem and master settings from a mix settings file, validated; errors name the file."""
    from mixscale import schema
    from mixscale.errors import SettingsError

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read mix settings ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("stems"), list) or "master" not in data:
        raise SettingsError(f"{path}: a mix settings file is an object with 'stems' (a list) and 'master'")
    if len(data["stems"]) != stem_count:
        raise SettingsError(f"{path}: settings for {len(data['stems'])} stems, but {stem_count} stems were given")
    stems = []
    for i, entry in enumerate(data["stems"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("settings"), dict):
            raise SettingsError(f"{path}: stems[{i}] must be an object with 'settings'")
        stems.append(schema.validate(entry["settings"], "stem", source=f"{path} stems[{i}]"))
    return stems, schema.validate(data["master"], "master", source=f"{path} master")


def run(args) -> int:
    from mixscale import SAMPLE_RATE
    from mixscale.audio import check_output_path, read_audio, write_audio
    from mixscale.cli.audio_cmds import load_predictor, settings_path
    from mixscale.errors import MixscaleError
    from mixscale.inference import check_intensity, check_targets, genre_index, measure, render_mix, stack_stems

    check_output_path(args.out)
    check_targets(args.target_lufs, args.ceiling, ("--target-lufs", "--ceiling"))
    check_intensity(args.intensity, "--intensity")
    genre_index(args.genre)
    audio = [read_audio(path, SAMPLE_RATE)[0] for path in args.stems]
    if args.settings:
        stem_settings, master_settings = load_mix_settings(args.settings, len(args.stems))
        y = render_mix(stack_stems(audio, SAMPLE_RATE), stem_settings, master_settings)
        settings = {"stems": [{"name": n, "settings": s} for n, s in zip(args.stems, stem_settings)],
                    "master": master_settings}
    else:
        predictor = load_predictor(args, "mix")
        if predictor is None:
            raise MixscaleError("mix needs a model (--model) or settings (--settings)")
        result = predictor.mix(audio, SAMPLE_RATE, args.target_lufs, args.ceiling, args.intensity, args.genre)
        y, settings = result.audio, result.settings_dict(args.stems)
        print(f"model {predictor.path}: genre {result.genre}, intensity {args.intensity:g}")
    write_audio(args.out, y, SAMPLE_RATE)
    sidecar = settings_path(args.out)
    sidecar.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    got = measure(y, SAMPLE_RATE)
    print(f"wrote {args.out} ({len(args.stems)} stems, {SAMPLE_RATE} Hz, 24-bit): {got['integrated_lufs']:.2f} LUFS, "
          f"true peak {got['true_peak_dbtp']:.2f} dBTP")
    print(f"wrote {sidecar} (edit it and run `mixscale mix {' '.join(args.stems)} --settings {sidecar} --out OUT`)")
    return 0
