"""Feature shards: band features of reference windows, computed once on Ray, and the loader
that draws feature-domain training pairs from them (DESIGN.md, "The learning task", 5).

Gain, EQ and width are linear and time-invariant, so the band features of a perturbed
window are those of its reference plus curves (``mixscale.data.pairs.make_feature_pair``).
The references' features are computed once (``build_feature_shards``: one Ray task per
part, each reading its share of the shards with the streaming reader), and training then
draws unlimited perturbations by adding curves: no decoding, no filtering, no STFT per step.

Layout of OUT::

    OUT/index.json                  {"format", "version", "source", "window_seconds",
                                     "windows_per_sample", "bands": {sample_rate, n_fft, hop,
                                     n_bands}, "splits": {split: {"files", "windows", "tracks"}},
                                     "statistics": {"mean", "std", "frames"} (train split, (2, K) dB)}
    OUT/<split>/part-NNNN.npz       bands (N, 2, K, F) float16 dB of the reference windows,
                                     expanded (N, 2, K, F) float16 dB of one audio-rendered
                                     expanded variant each, expansion (N, 4) float32 (its ratio,
                                     threshold dBFS, attack ms, release ms: ``pairs.render_expansion``),
                                     genre (N,) int16 (-1 none), track (N,) str

Each sample (segment) of the shards gives ``windows_per_sample`` windows (the reader's seeded
offsets of epochs 0, 1, ...). The windows, their shares and the expansion draws depend on the
seed and on ``parts`` (recorded in the index): the same pair gives the same features. Shapes: K bands, F frames (``mixscale.features.bands``).
"""

from __future__ import annotations

import json
import sys
import zlib
import time
from typing import Any, Iterator, Mapping, Sequence

import fsspec
import numpy as np
import torch

from mixscale.audio import resample
from mixscale.data.pairs import (DEFAULT_PERTURBATION, VARIED_PERTURBATION, MasterPerturbation, make_feature_pair,
                                 render_expansion)
from mixscale.data.reader import ReaderConfig, list_shards, make_dataloader, reference_pair_fn
from mixscale.errors import CorpusError
from mixscale.features.bands import BAND_SAMPLE_RATE, HOP, N_BANDS, N_FFT, band_frames_db, num_frames

FORMAT = "mixscale-features"
VERSION = 1
INDEX_NAME = "index.json"
PART_NAME = "part-{:04d}.npz"
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------- building


def _part(shards: str, split: str, rank: int, parts: int, out: str, window_seconds: float, windows_per_sample: int,
          seed: int, storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """Features of the windows of one share of a split -> OUT/<split>/part-<rank>.npz, with
    the sums that pool into the split's statistics."""
    torch.set_num_threads(1)
    cfg = ReaderConfig(url=shards, split=split, chain="master", segment_seconds=window_seconds, shuffle_buffer=0,
                       batch_size=16, num_workers=0, seed=seed, storage_options=dict(storage_options))
    loader = make_dataloader(cfg, rank, parts, pair_fn=reference_pair_fn("master"))
    sr = loader.dataset.sample_rate
    bands, expanded, expansion, genres, tracks = [], [], [], [], []
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{split}/{rank}/{parts}".encode()))
    for epoch in range(windows_per_sample):
        loader.set_epoch(epoch)
        for batch in loader:
            keep = batch["valid_samples"] >= int(0.9 * batch["x_ref"].shape[-1])  # no padded short tails
            if not keep.any():
                continue
            x = batch["x_ref"][keep].float()
            if sr != BAND_SAMPLE_RATE:
                x = resample(x, sr, BAND_SAMPLE_RATE)
            bands.append(band_frames_db(x).half())
            y, params = render_expansion(x.double(), BAND_SAMPLE_RATE, gen)
            expanded.append(band_frames_db(y).half())
            expansion.append(params.float())
            genres.append(batch["genre"][keep].to(torch.int16))
            tracks += [t for t, k in zip(batch["track_id"], keep.tolist()) if k]
    if not tracks:
        return {"split": split, "file": None, "windows": 0, "tracks": [], "parts": parts}
    b = torch.cat(bands)
    name = f"{split}/{PART_NAME.format(rank)}"
    path = f"{out.rstrip('/')}/{name}"
    with fsspec.open(path, "wb", auto_mkdir=True) as fh:
        np.savez(fh, bands=b.numpy(), expanded=torch.cat(expanded).numpy(),
                 expansion=torch.cat(expansion).numpy(), genre=torch.cat(genres).numpy(), track=np.array(tracks))
    db = b.double()
    return {"split": split, "file": name, "windows": len(tracks), "tracks": sorted(set(tracks)), "parts": parts,
            "frames": db.shape[0] * db.shape[-1], "sum": db.sum(dim=(0, 3)).tolist(),
            "sumsq": db.square().sum(dim=(0, 3)).tolist()}


def build_feature_shards(shards: str, out: str, *, window_seconds: float = 10.0, windows_per_sample: int = 2,
                         splits: Sequence[str] = SPLITS, parts: int | None = None, seed: int = 0,
                         storage_options: Mapping[str, Any] | None = None, address: str | None = None,
                         progress: bool = True, use_ray: bool = True) -> dict[str, Any]:
    """Compute the band features of every split of ``shards`` that exists, as Ray tasks
    (``parts`` per split, default: the cluster's CPUs), and write OUT/index.json.
    ``use_ray=False`` runs the same parts one after another in this process (tests).

    Raises ``CorpusError`` when the shards hold none of ``splits``.
    """
    import ray

    from mixscale.data.build import _ensure_ray

    if window_seconds <= 0 or windows_per_sample < 1:
        raise CorpusError(f"feature shards: window_seconds = {window_seconds} must be > 0 and windows_per_sample "
                          f"= {windows_per_sample} >= 1")
    storage_options = dict(storage_options or {})
    present = {}
    for split in splits:
        try:
            present[split] = len(list_shards(shards, split, storage_options)[0])
        except CorpusError:
            continue
    if not present:
        raise CorpusError(f"{shards}: none of the splits {', '.join(splits)} has shards")
    started = time.perf_counter()
    if not use_ray:
        n = parts or 1
        results = [_part(shards, split, r, min(n, count), out, window_seconds, windows_per_sample, seed,
                         storage_options) for split, count in present.items() for r in range(min(n, count))]
        return _write_index(out, _index(shards, window_seconds, windows_per_sample, results))
    connected = _ensure_ray(address, None)
    try:
        n = parts or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=2)(_part)
        jobs = [task.remote(shards, split, r, min(n, count), out, window_seconds, windows_per_sample, seed,
                            storage_options) for split, count in present.items() for r in range(min(n, count))]
        results = []
        while jobs:
            done, jobs = ray.wait(jobs, num_returns=1)
            results.append(ray.get(done[0]))
            if progress:
                print(f"\rfeatures: {len(results)}/{len(results) + len(jobs)} parts "
                      f"({time.perf_counter() - started:.0f} s)", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr, flush=True)
    finally:
        if connected:
            ray.shutdown()
    return _write_index(out, _index(shards, window_seconds, windows_per_sample, results))


def _write_index(out: str, index: dict[str, Any]) -> dict[str, Any]:
    with fsspec.open(f"{out.rstrip('/')}/{INDEX_NAME}", "w", auto_mkdir=True) as fh:
        json.dump(index, fh, indent=1)
    return index


def _index(shards: str, window_seconds: float, windows_per_sample: int, results: list[dict]) -> dict[str, Any]:
    splits: dict[str, dict[str, Any]] = {}
    tracks: dict[str, set[str]] = {}
    for r in sorted((r for r in results if r["file"]), key=lambda r: r["file"]):
        s = splits.setdefault(r["split"], {"files": [], "windows": 0, "tracks": 0})
        s["files"].append(r["file"])
        s["windows"] += r["windows"]
        tracks.setdefault(r["split"], set()).update(r["tracks"])
        s["tracks"] = len(tracks[r["split"]])
    train = [r for r in results if r["split"] == "train" and r["file"]]
    stats = None
    if train:
        frames = sum(r["frames"] for r in train)
        total = sum(torch.tensor(r["sum"], dtype=torch.float64) for r in train)
        total_sq = sum(torch.tensor(r["sumsq"], dtype=torch.float64) for r in train)
        mean = total / frames
        std = (total_sq / frames - mean.square()).clamp_min(0).sqrt()
        stats = {"mean": mean.tolist(), "std": std.tolist(), "frames": frames}
    return {"format": FORMAT, "version": VERSION, "source": shards, "window_seconds": window_seconds,
            "windows_per_sample": windows_per_sample, "parts": max((r.get("parts", 1) for r in results), default=1),
            "bands": {"sample_rate": BAND_SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "n_bands": N_BANDS},
            "splits": splits, "statistics": stats}


def read_index(folder: str) -> dict[str, Any]:
    path = f"{folder.rstrip('/')}/{INDEX_NAME}"
    try:
        with fsspec.open(path, "r") as fh:
            index = json.load(fh)
    except FileNotFoundError:
        raise CorpusError(f"{path}: no feature index; run `mixscale features build --shards SHARDS --out "
                          f"{folder}` first") from None
    if index.get("format") != FORMAT or index.get("bands", {}).get("n_bands") != N_BANDS:
        raise CorpusError(f"{path}: not a mixscale feature index of {N_BANDS} bands (format "
                          f"{index.get('format')!r}, bands {index.get('bands')})")
    return index


def band_statistics(folders: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) (2, K) of the train split's features, pooled over ``folders`` by frames."""
    parts = [read_index(f)["statistics"] for f in folders]
    parts = [p for p in parts if p]
    if not parts:
        raise CorpusError(f"feature folders {list(folders)}: no train split to take the input statistics from")
    frames = sum(p["frames"] for p in parts)
    mean = sum(torch.tensor(p["mean"], dtype=torch.float64) * p["frames"] for p in parts) / frames
    second = sum((torch.tensor(p["std"], dtype=torch.float64).square() + torch.tensor(p["mean"],
                  dtype=torch.float64).square()) * p["frames"] for p in parts) / frames
    return mean.float(), (second - mean.square()).clamp_min(0).sqrt().float()


# ---------------------------------------------------------------- the training loader


class FeaturePairs:
    """Feature-domain master pairs from the feature shards of ``folders`` (one split).

    A loader with the reader's interface (``set_epoch``, iteration, ``dataset.world_size``):
    each batch is ``make_feature_pair``'s dict plus ``genre``. Training: a seeded shuffle per
    epoch and rank, a random crop of ``crop_seconds``, and with probability ``mix_probability``
    a window replaced by the power sum of itself and another (a new plausible mix, against
    memorising references; its genre becomes unknown). Evaluation: every window of the rank in order, whole, with the same
    perturbations every epoch. Windows are shared out to ranks by index modulo world size.
    """

    def __init__(self, folders: Sequence[str], split: str, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, *, train: bool = True, crop_seconds: float | None = None,
                 mix_probability: float = 0.0, strength: float = 1.0,
                 spec: MasterPerturbation = DEFAULT_PERTURBATION):
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.train, self.mix_probability, self.strength, self.spec = train, mix_probability, strength, spec
        self.crop = num_frames(int(round(crop_seconds * BAND_SAMPLE_RATE))) if crop_seconds else None
        self.epoch = 0
        bands, expanded, expansion, genre = [], [], [], []
        for folder in folders:
            index = read_index(folder)
            for name in index["splits"].get(split, {}).get("files", []):
                with fsspec.open(f"{folder.rstrip('/')}/{name}", "rb") as fh:
                    data = np.load(fh)
                    bands.append(torch.from_numpy(data["bands"]))
                    expanded.append(torch.from_numpy(data["expanded"]))
                    expansion.append(torch.from_numpy(data["expansion"]))
                    genre.append(torch.from_numpy(data["genre"].astype(np.int64)))
        if not bands:
            raise CorpusError(f"feature folders {list(folders)}: no {split!r} windows")
        frames = min(b.shape[-1] for b in bands)  # windows of other lengths are cut to the shortest
        self.bands = torch.cat([b[..., :frames] for b in bands])[rank::world_size]
        self.expanded = torch.cat([e[..., :frames] for e in expanded])[rank::world_size]
        self.expansion = torch.cat(expansion)[rank::world_size]
        self.genre = torch.cat(genre)[rank::world_size]
        if self.bands.shape[0] < (batch_size if train else 1):
            raise CorpusError(f"feature folders {list(folders)}: split {split!r} has {self.bands.shape[0]} windows "
                              f"for rank {rank} of {world_size}; a batch needs {batch_size}")

    @property
    def dataset(self) -> "FeaturePairs":
        return self

    @property
    def num_samples(self) -> int:
        return int(self.bands.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples // self.batch_size if self.train else -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, self.rank, 7])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        n = self.num_samples
        order = rng.permutation(n) if self.train else np.arange(n)
        last = n - self.batch_size + 1 if self.train else n  # evaluation scores every window
        for start in range(0, last, self.batch_size):
            idx = torch.from_numpy(order[start:start + self.batch_size])
            bands, expanded, genre = self.bands[idx].float(), self.expanded[idx].float(), self.genre[idx].clone()
            if self.train and self.crop and self.crop < bands.shape[-1]:
                at = int(rng.integers(0, bands.shape[-1] - self.crop + 1))
                bands, expanded = bands[..., at:at + self.crop], expanded[..., at:at + self.crop]
            if self.train and self.mix_probability > 0:
                bands, genre = self._mix(bands, genre, rng)
            pair = make_feature_pair(bands, gen, self.strength, self.spec, expanded_bands=expanded,
                                     expansion=self.expansion[idx])
            pair["genre"] = genre
            yield pair

    def _mix(self, bands, genre, rng):
        """Some windows become the power sum of themselves and another window of the batch.
        (Their expanded variants stay as they were: an expanded item is never a mixed one.)"""
        mixed = torch.from_numpy(rng.random(bands.shape[0]) < self.mix_probability)
        if not mixed.any():
            return bands, genre
        other = torch.from_numpy(rng.permutation(bands.shape[0]))
        summed = 10.0 * torch.log10((10.0 ** (bands / 10.0) + 10.0 ** (bands[other] / 10.0)).clamp_min(1e-12))
        bands = torch.where(mixed[:, None, None, None], summed, bands)
        return bands, torch.where(mixed, torch.full_like(genre, -1), genre)


def feature_loader(config, train: bool, rank: int, world_size: int) -> FeaturePairs | None:
    """The feature-domain loader of a training config (``data.features`` set), or None when
    the config has no validation split."""
    data = config.data
    split = data.split(train)
    if split is None:
        return None
    crop = data.segment_seconds if isinstance(data.segment_seconds, (int, float)) else max(data.segment_seconds)
    return FeaturePairs(data.features, split, data.batch_size, config.seed, rank, world_size, train=train,
                        crop_seconds=float(crop) if crop else None, mix_probability=data.feature_mix,
                        strength=data.pair_strength,
                        spec=VARIED_PERTURBATION if data.pair_varied else DEFAULT_PERTURBATION)


__all__ = ["FeaturePairs", "band_statistics", "build_feature_shards", "feature_loader", "read_index"]
