"""The reader's tar parser (``tar_members``), lazy FLAC members of local shards (``TarMember``)
and the default segment length shared by the shard builder's CLI and ``bench/data.py``."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections import Counter

import fsspec
import numpy as np
import pytest
import torch

from mixscale.data import shard_format as fmt
from mixscale.data.build import DEFAULT_SEGMENT_SECONDS
from mixscale.data.reader import (
    FlacSource,
    ReaderConfig,
    TarMember,
    iter_tar_samples,
    list_shards,
    make_dataloader,
    reference_pair_fn,
    tar_members,
)
from mixscale.testing.shards import track_ids, truncate_shard, write_test_shards

SR = 8000


def _tar(path, members: list[tuple[str, bytes]], fmt_=tarfile.PAX_FORMAT, extra=None) -> None:
    """A tar of (name, data) regular files; ``extra(tar)`` may add other entries first."""
    with tarfile.open(path, "w", format=fmt_) as tar:
        if extra:
            extra(tar)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _members(path, lazy: bool) -> list[tuple[str, bytes]]:
    """(name, bytes) from tar_members, reading lazy members back through TarMember."""
    with open(path, "rb") as fh:
        out = list(tar_members(fh, os.path.getsize(path) if lazy else None))
    return [(n, TarMember(str(path), *d).open().read() if isinstance(d, tuple) else d) for n, d in out]


def _dirs_and_meta(tar: tarfile.TarFile) -> None:
    d = tarfile.TarInfo("somedir")
    d.type = tarfile.DIRTYPE
    tar.addfile(d)
    info = tarfile.TarInfo("__meta__")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"abc"))


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("lazy", [False, True])
def test_tar_members_match_tarfile_for_every_header_format(tmp_path, tar_format, lazy):
    rng = np.random.default_rng(0)
    long = "k" * (150 if tar_format != tarfile.USTAR_FORMAT else 90)  # pax / GNU long names
    members = [(f"{long}{i}.mix.flac", rng.bytes(int(rng.integers(0, 3000)))) for i in range(4)]
    members += [(f"{long}{i}.json", b'{"i": %d}' % i) for i in range(3)] + [("empty.flac", b"")]
    path = tmp_path / "a.tar"
    _tar(path, members, tar_format, extra=_dirs_and_meta)
    with tarfile.open(path) as t:
        expected = [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.isreg() and m.name != "__meta__"]
    assert _members(path, lazy) == expected == members


@pytest.mark.parametrize("lazy", [False, True])
def test_a_broken_off_tar_raises_at_the_break_and_keeps_what_came_before(tmp_path, lazy):
    members = [(f"s{i}.mix.flac", bytes([i]) * 5000) for i in range(4)]
    path = tmp_path / "a.tar"
    _tar(path, members)
    whole = path.read_bytes()
    # In a header, in a member, at a header (no end-of-archive block), in a member's padding.
    for cut in (512 + 100, 2 * 512 + 3000, 2 * (2 * 512 + 5120), 6 * 512 + 3 * 5120 - 7):
        path.write_bytes(whole[:cut])
        got = []
        with open(path, "rb") as fh, pytest.raises(tarfile.ReadError):
            for name, data in tar_members(fh, cut if lazy else None):
                got.append(name)
        assert got == [n for n, _ in members[: len(got)]] and len(got) < 4
    for bad, why in ((b"", "empty"), (gzip.compress(whole), "compressed"), (b"x" * 700, "invalid header")):
        path.write_bytes(bad)
        with open(path, "rb") as fh, pytest.raises(tarfile.TarError, match=why):
            list(tar_members(fh, len(bad) if lazy else None))


def test_local_shards_give_flac_members_by_position_and_remote_ones_as_bytes(tmp_path):
    write_test_shards(str(tmp_path / "s"), 3, 3, seconds=0.5, sample_rate=SR, stems=2)
    url = list_shards(str(tmp_path / "s"), "train")[0][0].url
    stats = Counter()
    eager = list(iter_tar_samples(url, {}, stats))
    lazy = list(iter_tar_samples(url, {}, stats, lazy_audio=True))
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "s"), "/lazy-shards", recursive=True)
    try:
        remote = list(iter_tar_samples("memory://lazy-shards/train/shard-000000.tar", {}, stats, lazy_audio=True))
    finally:
        fs.rm("/lazy-shards", recursive=True)
    assert not stats and len(eager) == len(lazy) == len(remote) == 3
    for e, z, r in zip(eager, lazy, remote):
        assert e.keys() == z.keys() == r.keys() and isinstance(e[fmt.MIX_EXT], bytes)
        assert isinstance(z[fmt.MIX_EXT], TarMember) and isinstance(r[fmt.MIX_EXT], bytes)
        assert isinstance(z[fmt.JSON_EXT], bytes) and z[fmt.JSON_EXT] == e[fmt.JSON_EXT]
        for ext in (fmt.MIX_EXT, fmt.STEM_EXT.format(0), fmt.STEM_EXT.format(1)):
            assert z[ext].open().read() == e[ext] == r[ext]
        # Windows decoded from the tar by position equal those decoded from the bytes.
        rng = np.random.default_rng(0)
        for chain in ("master", "mix"):
            a = FlacSource(e[fmt.MIX_EXT], [e[fmt.STEM_EXT.format(i)] for i in range(2)]).open(chain, 8, rng, SR)
            b = FlacSource(z[fmt.MIX_EXT], [z[fmt.STEM_EXT.format(i)] for i in range(2)]).open(chain, 8, rng, SR)
            assert a.frames == b.frames == 4000
            assert np.array_equal(a.read(1234, 2000), b.read(1234, 2000))


def test_member_file_is_a_bounded_seekable_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"HEAD" + bytes(range(100)) + b"TAIL")
    f = TarMember(str(path), 4, 100).open()
    assert f.read(3) == bytes([0, 1, 2]) and f.tell() == 3
    assert f.seek(-2, os.SEEK_END) == 98 and f.read() == bytes([98, 99]) and f.read(5) == b""
    assert f.seek(10) == 10 and f.seek(5, os.SEEK_CUR) == 15 and f.read(2) == bytes([15, 16])
    f.close()
    assert f.closed


def test_reader_batches_from_local_and_remote_shards_are_equal(tmp_path):
    """Lazy members (local) and bytes (memory://) give the same batches, stems included."""
    write_test_shards(str(tmp_path / "s"), 7, 3, seconds=[0.5, 0.3], sample_rate=SR, stems=3)
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "s"), "/eq-shards", recursive=True)
    try:
        for chain in ("master", "mix"):
            out = []
            for url in (str(tmp_path / "s"), "memory://eq-shards"):
                cfg = ReaderConfig(url=url, chain=chain, segment_seconds=0.25, batch_size=3, num_workers=0,
                                   shuffle_buffer=4, max_stems=2)
                loader = make_dataloader(cfg, pair_fn=reference_pair_fn(chain))
                out.append((list(loader), loader.stats))
            (a, sa), (b, sb) = out
            assert sa["samples"] == sb["samples"] == 7 and len(a) == len(b) == 3
            for x, y in zip(a, b):
                assert x.keys() == y.keys() and x["track_id"] == y["track_id"]
                assert torch.equal(x["x_ref"], y["x_ref"])
    finally:
        fs.rm("/eq-shards", recursive=True)


def test_truncated_local_shard_is_counted_once_with_lazy_members(tmp_path):
    write_test_shards(str(tmp_path), 8, 4, seconds=0.5, sample_rate=SR)
    truncate_shard(os.path.join(tmp_path, fmt.shard_path("train", 0)), 0.5)
    cfg = ReaderConfig(url=str(tmp_path), segment_seconds=0.25, batch_size=4, num_workers=0, shuffle_buffer=0)
    loader = make_dataloader(cfg, pair_fn=reference_pair_fn("master"))
    ids = [t for b in loader for t in b["track_id"]]
    assert loader.stats["corrupt_shards"] == 1 and loader.stats["corrupt"] == 0
    assert set(track_ids(8)[4:]) <= set(ids) and len(ids) < 8


def test_default_segment_length_is_one_constant_for_the_cli_and_the_bench(capsys):
    import importlib.util

    from mixscale.cli.main import main

    with pytest.raises(SystemExit):
        main(["shards", "build", "--help"])
    assert f"default: {DEFAULT_SEGMENT_SECONDS:g} s" in " ".join(capsys.readouterr().out.split())
    spec = importlib.util.spec_from_file_location(
        "bench_data", os.path.join(os.path.dirname(__file__), "..", "bench", "data.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.parser().parse_args([]).seconds == DEFAULT_SEGMENT_SECONDS
