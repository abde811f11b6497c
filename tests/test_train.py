"""Training: config presets and overrides, optimizer and schedule, the framework-free step and
loop (loss falls, exact resume), and Ray Train (2 workers on disjoint shards, fault tolerance)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml

from mixscale.data.pairs import make_master_pair
from mixscale.losses.total import CombinedLoss
from mixscale.models.builders import build_model
from mixscale.models.checkpoint import load_checkpoint, read_meta
from mixscale.testing.shards import synthetic_clip, track_ids, write_test_shards
from mixscale.train.config import (
    ConfigError,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    load_config,
    merge,
    preset_chain,
    presets,
)
from mixscale.train.loop import LocalReporter, fit
from mixscale.train.step import (
    StepContext,
    build_optimizer,
    build_scheduler,
    train_step,
)

SR = 8000
REPO = Path(__file__).resolve().parents[1]
PRESETS = ("base", "tiny", "quickstart", "synth-full", "musdb18hq", "medleydb", "fma", "gtzan", "audioset")


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory) -> str:
    """16 train samples in 8 shards of 2, and 4 valid samples, 1 s at 8 kHz."""
    root = str(tmp_path_factory.mktemp("shards"))
    write_test_shards(root, 16, 2, split="train", seconds=1.0, sample_rate=SR)
    write_test_shards(root, 4, 2, split="valid", seconds=1.0, sample_rate=SR, seed=1)
    return root


def tiny(url: str, storage: Path, *overrides: str) -> TrainConfig:
    return load_config("tiny", [f"data.url={url}", f"run.storage_path={storage}", *overrides])


# ---------------------------------------------------------------- config


def test_every_preset_loads_and_base_mirrors_the_dataclasses():
    assert set(PRESETS) <= set(presets())
    for name in PRESETS:
        cfg = load_config(name)
        assert isinstance(cfg, TrainConfig)
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round trip through plain values
    assert load_config("base") == TrainConfig()
    base_yaml = preset_chain("base")[0][1]
    defaults = TrainConfig().to_dict()

    def check(sub, ref, where):
        for k, v in sub.items():
            if isinstance(v, dict) and v:
                check(v, ref[k], f"{where}{k}.")
            else:
                assert v == ref[k], f"base.yaml {where}{k} = {v!r}, dataclass default {ref[k]!r}"
    check(base_yaml, defaults, "")


def test_presets_hold_only_their_differences():
    for name in PRESETS[1:]:
        chain = preset_chain(name)
        parent = {}
        for _, data in chain[:-1]:
            parent = merge(parent, data)
        parent = TrainConfig.from_dict(parent).to_dict()
        own = chain[-1][1]

        def check(sub, ref, where):
            for k, v in sub.items():
                if isinstance(v, dict) and isinstance(ref.get(k), dict) and v:
                    check(v, ref[k], f"{where}{k}.")
                else:
                    assert v != ref.get(k), f"preset {name}: {where}{k} = {v!r} repeats what it inherits"
        check(own, parent, "")


def test_set_overrides_coerce_to_the_field_type():
    cfg = load_config("tiny", ["optim.lr=3e-4", "epochs=7", "run.name=123", "data.segment_seconds=[4, 15]",
                               "model.mlp_hidden=[16]", "data.augment.gain=true", "loss.group_weights.eq=2",
                               "scaling.use_gpu=false", "data.valid_split=null", "monitor=train_loss"])
    assert cfg.optim.lr == 3e-4 and cfg.epochs == 7 and cfg.run.name == "123"
    assert cfg.data.segment_seconds == [4.0, 15.0] and cfg.model.mlp_hidden == (16,)
    assert cfg.data.augment.gain is True and cfg.loss.group_weights == {"eq": 2.0}
    assert cfg.data.valid_split is None
    # A preset's value is kept where not overridden.
    assert cfg.model.n_mels == load_config("tiny").model.n_mels


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", ["optim", "lrr", "lr, weight_decay"]),
    ("nosuch=1", ["nosuch", "epochs"]),
    ("optim.lr=fast", ["optim.lr", "fast", "a number"]),
    ("epochs=1.5", ["epochs", "1.5", "integer"]),
    ("epochs=0", ["epochs", "0", ">= 1"]),
    ("optim.name=sgd", ["optim.name", "sgd", "adam | adamw | rmsprop"]),
    ("model.arch=transformerx", ["model.arch", "transformerx", "cnn"]),
    ("data.augment.gain_db=[10, -10]", ["gain_db", "-10"]),
    ("loss.group_weights.tone=1", ["tone", "eq"]),
    ("optim.lr.x=1", ["optim.lr", "x"]),
    ("epochs", ["key=value"]),
    ("data.chain=mix", ["data.chain", "mix", "master"]),
])
def test_bad_overrides_raise_naming_key_value_and_allowed(override, words):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", [override])
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_config_files_inherit_and_errors_name_the_file(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("inherit: tiny\noptim:\n  lr: 5e-4\n")
    cfg = load_config(str(good))
    assert cfg.optim.lr == 5e-4 and cfg.run.name == "tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*tiny"):
        load_config("nope")
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"inherit: {loop}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(loop))


def test_config_files_load_from_a_url_with_relative_inherit(tmp_path):
    # A sweep's best.yaml in object storage: read through fsspec, its relative inherit beside it.
    from mixscale.testing.http import serve_directory

    (tmp_path / "parent.yaml").write_text("inherit: tiny\nepochs: 9\n")
    (tmp_path / "best.yaml").write_text("inherit: parent.yaml\noptim:\n  lr: 5e-4\n")
    with serve_directory(str(tmp_path)) as (base, served):
        cfg = load_config(f"{base}/best.yaml")
        with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
            load_config(f"{base}/missing.yaml")
    assert cfg.optim.lr == 5e-4 and cfg.epochs == 9 and cfg.run.name == "tiny"
    assert {"/best.yaml", "/parent.yaml"} <= set(served)


# ---------------------------------------------------------------- optimizer and schedule


def test_optimizers_by_name():
    params = [torch.nn.Parameter(torch.zeros(3))]
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
    for name, cls in kinds.items():
        assert type(build_optimizer(params, OptimConfig(name=name, lr=0.01))) is cls


def test_schedule_warms_up_linearly_then_restarts_cosine():
    lr, warm, T0 = 0.1, 4, 5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(opt, ScheduleConfig(warmup_steps=warm, T_0=T0, T_mult=2, eta_min=0.0))
    seen = []
    for _ in range(warm + T0 + 2 * T0 + 1):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:warm + 1] == pytest.approx([lr * (k + 1) / (warm + 1) for k in range(warm)] + [lr])
    cosine = seen[warm:]
    assert cosine[0] == pytest.approx(lr)
    assert cosine[T0 // 2] < cosine[1] < cosine[0]                # annealing
    assert cosine[T0] == pytest.approx(lr)                        # first restart after T_0
    assert cosine[T0 + 2 * T0] == pytest.approx(lr)               # second period is T_mult x longer
    assert cosine[T0 + T0] < lr


# ---------------------------------------------------------------- the framework-free step and loop


def test_train_step_on_one_batch_makes_the_loss_fall():
    cfg = load_config("tiny", ["optim.lr=0.01"])
    torch.manual_seed(0)
    x = torch.stack([synthetic_clip(i, SR // 2, SR) for i in range(4)])
    batch = dict(make_master_pair(x, SR, torch.Generator().manual_seed(0)), genre=torch.tensor([0, 1, -1, 3]))
    model = build_model(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    ctx = StepContext(model=model, loss_fn=CombinedLoss(cfg.loss, "master", SR), optimizer=opt,
                      scheduler=build_scheduler(opt, cfg.schedule), device=torch.device("cpu"), task="master",
                      grad_clip=1.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what fit picks for a 1-CPU worker; tiny ops only spin on more
    try:
        losses = [train_step(ctx, batch)["total"] for _ in range(25)]
    finally:
        torch.set_num_threads(threads)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


def test_epoch_batches_take_exactly_steps_batches_across_passes(tiny_shards):
    from mixscale.train.loop import epoch_batches, make_loader

    cfg = tiny(tiny_shards, Path("unused"), "data.num_workers=0", "data.segment_seconds=0.1")
    loader = make_loader(cfg, True, 0, 1)
    one_pass = [b["track_id"] for b in epoch_batches(loader, 0, 3, 0, torch.device("cpu"))]
    assert len(one_pass) == 4 and sorted(sum(one_pass, [])) == track_ids(16)
    six = [b["track_id"] for b in epoch_batches(loader, 0, 3, 6, torch.device("cpu"))]
    assert len(six) == 6
    assert six[:4] == one_pass  # pass 0 is the epoch's own order; pass 1 continues with a new one
    again = [b["track_id"] for b in epoch_batches(loader, 0, 3, 6, torch.device("cpu"))]
    assert again == six  # deterministic: what a resumed run replays


def test_fit_loss_falls_keeps_best_and_last_and_resumes_exactly(tiny_shards, tmp_path):
    overrides = ["data.num_workers=0", "scaling.num_workers=1", "optim.lr=0.01"]
    full = fit(tiny(tiny_shards, tmp_path / "a", *overrides, "epochs=3"))
    assert full.global_step == 3 * 4  # 16 samples / batch 4 per epoch
    losses = [h["train_loss"] for h in full.history]
    assert losses[-1] < losses[0], losses
    run = tmp_path / "a" / "tiny" / "checkpoints"
    assert read_meta(run / "best" / "model")["extra"]["epoch"] == full.best_epoch + 1
    assert read_meta(run / "last" / "model")["extra"]["global_step"] == 12
    assert list((tmp_path / "a" / "tiny" / "tensorboard").glob("events.out.tfevents.*"))

    # Interrupted after epoch 2, then resumed: the same steps and the same numbers.
    part = fit(tiny(tiny_shards, tmp_path / "b", *overrides, "epochs=2"))
    assert part.global_step == 8
    resumed = fit(tiny(tiny_shards, tmp_path / "b", *overrides, "epochs=3"))
    assert resumed.resumed and resumed.global_step == full.global_step
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-6)
    assert resumed.history[-1]["val_loss"] == pytest.approx(full.history[-1]["val_loss"], rel=1e-6)


def test_early_stopping_ends_the_run(tiny_shards, tmp_path):
    # At a learning rate of ~0 only batch-norm statistics move val_loss, by far less than 0.01.
    cfg = tiny(tiny_shards, tmp_path, "data.num_workers=0", "optim.lr=1e-12", "epochs=10",
               "early_stopping_patience=2", "early_stopping_min_delta=0.01", "loss.stft_weight=0",
               "data.batch_size=8")
    result = fit(cfg, reporter=LocalReporter(str(tmp_path / "run")))
    assert result.stopped_early
    assert result.epochs == 3 and result.best_epoch == 0  # epochs 2 and 3 do not improve by 0.01
    assert [h["is_best"] for h in result.history] == [1.0, 0.0, 0.0]


# ---------------------------------------------------------------- Ray Train


def _seen(run_dir: Path, epoch: int, world: int) -> list[list[str]]:
    return [json.loads((run_dir / "seen" / f"epoch{epoch:04d}-rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.slow
def test_ray_train_two_workers_disjoint_shards_loss_falls_and_a_killed_worker_resumes(ray_session, tiny_shards,
                                                                                     tmp_path):
    """One 2-worker run (Ray start-up dominates, so one run checks it all): rank 0 is killed
    in epoch 2, after epoch 1's checkpoint; FailureConfig(max_failures=1) restarts the group."""
    from mixscale.train.ray_train import train

    cfg = tiny(tiny_shards, tmp_path, "run.record_seen=true", "optim.lr=0.01", "epochs=3",
               "run.fail_at_step=3", "run.max_failures=1")
    run = train(cfg)
    run_dir = tmp_path / "tiny"
    # The loss fell.
    losses = [h["train_loss"] for h in run.history]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    # Both ranks read disjoint halves of the split, every epoch, together all of it.
    for epoch in range(3):
        a, b = _seen(run_dir, epoch, 2)
        assert a and b and not set(a) & set(b), (epoch, a, b)
        assert sorted(a + b) == track_ids(16)
    # The kill happened, the restarted workers resumed from epoch 1's checkpoint (not from
    # scratch), and the step count is what an uninterrupted run reaches (8 samples per rank, batch 4).
    assert (run_dir / "fault-injected").read_text().startswith("killed at global step 3")
    assert [h["attempt_start_epoch"] for h in run.history] == [0, 1, 1]
    assert [h["global_step"] for h in run.history] == [2, 4, 6]
    assert run.metrics["global_step"] == 6 and run.metrics["epoch"] == 3
    # The best model is exported in the models' checkpoint format, and TensorBoard logged.
    model = load_checkpoint(run.best_model)
    assert model.config == cfg.model
    assert run.best_metrics["val_loss"] == min(h["val_loss"] for h in run.history)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    # After the driver goes away, the same command with more epochs resumes the run from
    # its last checkpoint (Ray Train restores the run's state from storage).
    more = train(dataclasses.replace(cfg, epochs=4))
    assert [h["global_step"] for h in more.history] == [2, 4, 6, 8]
    assert more.history[-1]["attempt_start_epoch"] == 3


# ---------------------------------------------------------------- cross-validation and the command line


def test_cv_folds_split_the_train_split_disjointly(tiny_shards):
    from mixscale.train.cv import fold_config, summarize
    from mixscale.train.loop import make_loader

    base = load_config("tiny", [f"data.url={tiny_shards}", "data.segment_seconds=0.1"])
    seen = {}
    for k in range(2):
        cfg = fold_config(base, 2, k)
        assert cfg.run.name == f"tiny-fold{k}"
        ids = {}
        for train in (True, False):
            loader = make_loader(cfg, train, 0, 1)
            ids[train] = [t for b in loader for t in b["track_id"]]
        assert not set(ids[True]) & set(ids[False])
        assert sorted(ids[True] + ids[False]) == track_ids(16)
        # write_test_shards gives sample i fold i % 5; CV fold = fold % 2.
        assert all(int(t[1:]) % 5 % 2 == k for t in ids[False])
        seen[k] = set(ids[False])
    assert not seen[0] & seen[1]
    mean, std = summarize([{"val_loss": 1.0, "val_mae": 0.2, "epoch": 3}, {"val_loss": 3.0, "val_mae": 0.4}])
    assert mean == pytest.approx({"val_loss": 2.0, "val_mae": 0.3})
    assert std == pytest.approx({"val_loss": 1.0, "val_mae": 0.1})


def test_storage_paths_take_folders_and_fsspec_urls(tmp_path):
    from mixscale.train.ray_train import run_url, storage_for

    assert storage_for(str(tmp_path)) == (str(tmp_path), None)
    assert storage_for(f"file://{tmp_path}") == (str(tmp_path), None)
    assert storage_for("relative/runs")[0] == os.path.abspath("relative/runs")
    path, fs = storage_for("memory://bucket/runs")
    assert path == "/bucket/runs" and type(fs).__name__ == "PyFileSystem"
    cfg = load_config("tiny", [f"run.storage_path={tmp_path}"])
    assert run_url(cfg) == f"{tmp_path}/tiny"


def test_cli_train_prints_config_and_rejects_bad_overrides(capfd):
    from mixscale.cli.main import main

    assert main(["train", "--config", "tiny", "--set", "epochs=2", "--print-config"]) == 0
    out = yaml.safe_load(capfd.readouterr().out)
    assert out["epochs"] == 2 and out["run"]["name"] == "tiny"
    assert main(["train", "--config", "tiny", "--set", "optim.lr=fast"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr" in err[0] and "fast" in err[0] and "a number" in err[0]
    assert main(["train", "--config", "nosuchpreset"]) == 2
    assert "tiny" in capfd.readouterr().err
    # Shards without the split the run reads: one line before Ray starts.
    assert main(["train", "--config", "tiny", "--set", f"data.url={REPO}"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index.json" in err[0] and str(REPO) in err[0]


@pytest.mark.slow
def test_cli_k_fold_cross_validation_reports_mean_and_std(ray_session, tiny_shards, tmp_path, capfd):
    from mixscale.cli.main import main

    status = main(["train", "--config", "tiny", "--folds", "2", "--json", "--set", f"data.url={tiny_shards}",
                   "--set", f"run.storage_path={tmp_path}", "--set", "scaling.num_workers=1", "--set", "epochs=1",
                   "--set", "loss.stft_weight=0"])
    out = capfd.readouterr().out.strip().splitlines()
    assert status == 0
    summary = json.loads(out[-1])
    assert len(summary["folds"]) == 2
    for name in ("val_loss", "val_mae"):
        vals = [f[name] for f in summary["folds"]]
        assert summary["mean"][name] == pytest.approx(sum(vals) / 2)
        assert summary["std"][name] == pytest.approx(abs(vals[0] - vals[1]) / 2)
    for k in range(2):
        assert (tmp_path / f"tiny-fold{k}" / "best_model" / "meta.json").exists()
    assert json.loads((tmp_path / "tiny-cv.json").read_text())["mean"] == summary["mean"]


def test_fit_mix_task_on_stem_shards(tmp_path):
    root = str(tmp_path / "stems")
    write_test_shards(root, 8, 2, split="train", seconds=0.5, sample_rate=SR, stems=3)
    write_test_shards(root, 4, 2, split="valid", seconds=0.5, sample_rate=SR, stems=2, seed=1)
    cfg = tiny(root, tmp_path / "runs", "model.task=mix", "data.num_workers=0", "epochs=2", "data.segment_seconds=0.25")
    result = fit(cfg)
    assert result.global_step == 2 * 2
    last = result.history[-1]
    assert all(math.isfinite(last[k]) for k in ("train_loss", "val_loss", "val_mae", "val_mae_pan", "val_stft"))
    assert 0.0 <= last["val_mae_pan"] <= 1.0
