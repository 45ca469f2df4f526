"""ferry.load and ferry.restore_files against the official loaders.

Checkpoints are written by safetensors.torch.save_file and torch.save (real
PyTorch, real safetensors from PyPI), packed by the real `ferry pack`, pushed
to a real `ferry serve` over mTLS where a test needs a receiver, restored by
ferry.load and compared tensor by tensor (values bit for bit, dtype, shape)
with safetensors.torch.load_file / torch.load. Also: DLPack hands memory
over without a copy and frees it with the last tensor; a flipped byte in a
frame raises CorruptionError naming the chunk; a GPU asked for where none is
usable raises with the reason.
"""

from __future__ import annotations

import gc
import json
import os
import re
import struct
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
ferry = pytest.importorskip("ferry")
from ferry import _ext  # noqa: E402

# Small chunks, so that even small test tensors span several chunks and
# several frames feed one tensor.
SMALL_CHUNK_BYTES = 64 << 10
# Restored safetensors data sections start on this alignment (device_restore.h).
DATA_ALIGNMENT = 256

F8_TYPES = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
# Same-size integer types to compare bits (NaN-safe, and -0.0 != 0.0).
BITS_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t):
    return t.contiguous().view(BITS_VIEW[t.element_size()]) if t.dtype != torch.bool else t


def assert_same_tensors(actual, expected, device_type="cpu"):
    assert sorted(actual) == sorted(expected)
    for name, e in expected.items():
        a = actual[name]
        assert a.dtype == e.dtype, name
        assert a.shape == e.shape, name
        assert a.device.type == device_type, name
        assert torch.equal(bits(a.cpu()), bits(e.cpu())), name
        if e.dtype not in F8_TYPES and e.dtype in (torch.bfloat16, torch.float16, torch.float32,
                                                   torch.float64, torch.int64, torch.bool):
            assert torch.equal(a, e.to(a.device)), name


def varied_tensors(g):
    """Every dtype ferry maps, odd sizes, an empty and a 0-dim tensor."""
    t = {
        "model.layers.0.attn.q_proj.weight": (torch.randn(300, 257, generator=g) * 0.02).bfloat16(),
        "model.layers.0.mlp.up.weight": (torch.randn(129, 64, generator=g) * 0.02).half(),
        "model.norm.weight": torch.randn(64, 300, generator=g),
        "f64": torch.randn(17, generator=g, dtype=torch.float64),
        "i64": torch.randint(-(2**40), 2**40, (1000,), generator=g, dtype=torch.int64),
        "i32": torch.randint(-(2**30), 2**30, (3, 111), generator=g, dtype=torch.int32),
        "i16": torch.randint(-(2**15), 2**15, (77,), generator=g, dtype=torch.int16),
        "i8": torch.randint(-128, 128, (5, 5, 5), generator=g, dtype=torch.int8),
        "u8": torch.randint(0, 256, (333,), generator=g, dtype=torch.uint8),
        "mask": torch.randint(0, 2, (7, 5), generator=g).bool(),
        "empty": torch.empty(0, 4),
        "empty_bf16": torch.empty(3, 0, dtype=torch.bfloat16),
        "scalar": torch.tensor(3.5),
        "step": torch.tensor(1200, dtype=torch.int64),
    }
    for bits_, limit in ((16, 2**16), (32, 2**32), (64, 2**62)):
        dt = getattr(torch, f"uint{bits_}", None)
        if dt is not None:  # torch 2.3+: unsigned types beyond uint8
            t[f"u{bits_}"] = torch.randint(0, limit, (41,), generator=g, dtype=torch.int64).to(dt)
    for dt in F8_TYPES:
        t[f"fp8.{dt}".replace("torch.", "")] = (torch.randn(64, 33, generator=g) * 0.5).to(dt)
    return t


@pytest.fixture(scope="module")
def varied_dir(tmp_path_factory, test_seed):
    g = torch.Generator().manual_seed(test_seed)
    d = tmp_path_factory.mktemp("varied") / "ckpt"
    d.mkdir()
    safetensors_torch.save_file(varied_tensors(g), str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps({"hidden_size": 64, "note": "ferry test"}))
    return d


@pytest.fixture(scope="module")
def varied_archive(varied_dir, pack, tmp_path_factory):
    return pack(varied_dir, tmp_path_factory.mktemp("archive") / "varied.ferry", chunk_size=SMALL_CHUNK_BYTES)


def test_safetensors_every_dtype_equals_load_file(varied_dir, varied_archive):
    got = ferry.load(varied_archive, device="cpu")
    assert_same_tensors(got, safetensors_torch.load_file(str(varied_dir / "model.safetensors")))
    assert got["scalar"].dim() == 0 and got["scalar"].item() == 3.5
    assert got["empty"].numel() == 0 and got["empty_bf16"].shape == (3, 0)


def test_sharded_set_with_index(tmp_path, pack, test_seed):
    g = torch.Generator().manual_seed(test_seed + 1)
    d = tmp_path / "sharded"
    d.mkdir()
    weight_map, expected = {}, {}
    for shard in range(3):
        name = f"model-{shard + 1:05d}-of-00003.safetensors"
        part = {
            f"model.layers.{shard}.self_attn.{p}.weight": (torch.randn(96, 128, generator=g) * 0.02).bfloat16()
            for p in ("q_proj", "k_proj", "v_proj", "o_proj")
        }
        part[f"model.layers.{shard}.input_layernorm.weight"] = torch.ones(128, dtype=torch.bfloat16)
        safetensors_torch.save_file(part, str(d / name))
        weight_map.update({k: name for k in part})
        expected.update(safetensors_torch.load_file(str(d / name)))
    index = {"metadata": {"total_size": sum(t.numel() * 2 for t in expected.values())}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    archive = pack(d, tmp_path / "sharded.ferry", chunk_size=SMALL_CHUNK_BYTES)

    got = ferry.load(str(archive), device="cpu")
    assert_same_tensors(got, expected)
    files = ferry.restore_files(archive)
    assert sorted(files) == ["model.safetensors.index.json"]
    assert json.loads(bytes(files["model.safetensors.index.json"])) == index


def test_torch_save_checkpoints_are_merged(tmp_path, pack, test_seed):
    g = torch.Generator().manual_seed(test_seed + 2)
    d = tmp_path / "pt"
    d.mkdir()
    model = {
        "encoder.weight": (torch.randn(200, 64, generator=g) * 0.02).bfloat16(),
        "encoder.bias": torch.randn(64, generator=g),
        "head.weight": (torch.randn(64, 10, generator=g) * 0.02).half(),
        "mask": torch.randint(0, 2, (9,), generator=g).bool(),
        "count": torch.tensor(7),
    }
    torch.save(model, d / "pytorch_model.bin")
    optimizer = {
        "state": {0: {"exp_avg": torch.randn(200, 64, generator=g), "step": torch.tensor(3.0)}},
        "param_groups": [{"lr": 1e-3, "params": [0]}],
    }
    torch.save(optimizer, d / "optimizer.pt")
    safetensors_torch.save_file({"lm_head.weight": torch.randn(10, 64, generator=g)}, str(d / "head.safetensors"))
    (d / "trainer_state.json").write_text('{"global_step": 1200}')
    archive = pack(d, tmp_path / "pt.ferry", chunk_size=SMALL_CHUNK_BYTES)

    expected = dict(torch.load(d / "pytorch_model.bin", weights_only=True))
    opt = torch.load(d / "optimizer.pt", weights_only=True)
    expected["state.0.exp_avg"] = opt["state"][0]["exp_avg"]
    expected["state.0.step"] = opt["state"][0]["step"]
    expected.update(safetensors_torch.load_file(str(d / "head.safetensors")))
    assert_same_tensors(ferry.load(archive, device="cpu"), expected)

    files = ferry.restore_files(archive)
    assert sorted(files) == ["optimizer.pt", "pytorch_model.bin", "trainer_state.json"]
    for path, view in files.items():
        assert bytes(view) == (d / path).read_bytes(), path


def test_safetensors_ferry_does_not_parse_still_loads(tmp_path, pack):
    """A dtype ferry's packer has no layout for (F8_E8M0) packs as plain bytes;
    load() still returns its tensors, read by the safetensors package."""
    if not hasattr(torch, "float8_e8m0fnu"):
        pytest.skip(f"torch {torch.__version__} has no float8_e8m0fnu")
    d = tmp_path / "e8m0"
    d.mkdir()
    tensors = {"scales": torch.rand(16, 4).to(torch.float8_e8m0fnu), "w": torch.randn(8, 8)}
    try:
        safetensors_torch.save_file(tensors, str(d / "m.safetensors"))
    except Exception as e:  # an older safetensors without F8_E8M0
        pytest.skip(f"safetensors cannot write float8_e8m0fnu: {e}")
    archive = pack(d, tmp_path / "e8m0.ferry")
    assert_same_tensors(ferry.load(archive, device="cpu"), safetensors_torch.load_file(str(d / "m.safetensors")))


def test_a_name_in_two_files_raises_naming_both(tmp_path, pack):
    d = tmp_path / "dup"
    d.mkdir()
    safetensors_torch.save_file({"w": torch.zeros(2)}, str(d / "a.safetensors"))
    safetensors_torch.save_file({"w": torch.ones(2)}, str(d / "b.safetensors"))
    archive = pack(d, tmp_path / "dup.ferry")
    with pytest.raises(ferry.FerryError, match=r"'w' is in both a.safetensors and b.safetensors"):
        ferry.load(archive, device="cpu")


def safetensors_data_offsets(path: Path):
    """name -> begin offset in the data section, from the file's own header."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return {k: v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}


def test_dlpack_shares_memory_without_copy(varied_dir, varied_archive):
    restoration = _ext.restore(str(varied_archive), "cpu")
    entries = {e.name: e for e in restoration.tensors}
    tensors = ferry.tensors_of(restoration, "cpu")
    offsets = safetensors_data_offsets(varied_dir / "model.safetensors")
    for name, e in entries.items():
        assert e.device == "cpu" and e.file == "model.safetensors"
        if e.nbytes == 0:
            continue
        # The tensor is the restored memory itself, aligned like its offset.
        assert tensors[name].data_ptr() == e.data_ptr, name
        assert e.data_ptr % DATA_ALIGNMENT == offsets[name] % DATA_ALIGNMENT, name

    # Writing through the tensor changes the restored buffer, as another
    # view of the same memory sees it.
    t = tensors["model.norm.weight"]
    e = entries["model.norm.weight"]
    t.view(-1)[0] = 1234.5
    assert struct.unpack("<f", e.debug_bytes()[:4])[0] == 1234.5
    other = torch.utils.dlpack.from_dlpack(e.to_dlpack())
    assert other.view(-1)[0].item() == 1234.5
    assert other.data_ptr() == t.data_ptr()

    # Two restores are two allocations with equal contents.
    again = ferry.load(varied_archive, device="cpu")["model.norm.weight"]
    assert again.data_ptr() != t.data_ptr()
    assert again.view(-1)[0].item() != 1234.5
    assert torch.equal(again.view(-1)[1:], t.view(-1)[1:])


def test_dropping_the_tensors_frees_the_allocation(varied_archive):
    restoration = _ext.restore(str(varied_archive), "cpu")
    probe = restoration.tensors[0].allocation_probe()
    unused = _ext.restore(str(varied_archive), "cpu").tensors[0]  # never handed to torch
    unused_probe = unused.allocation_probe()
    unused.to_dlpack()  # a capsule nobody consumes is freed with itself
    del unused
    gc.collect()
    assert not unused_probe.alive

    tensors = ferry.tensors_of(restoration, "cpu")
    del restoration
    gc.collect()
    assert probe.alive  # the tensors own it now
    keep = tensors["i64"]
    del tensors
    gc.collect()
    assert probe.alive and probe.use_count == 1  # one tensor keeps the whole file's allocation
    assert keep.sum().item() == keep.sum().item()
    del keep
    gc.collect()
    assert not probe.alive


def test_restored_file_memoryview_is_the_restored_memory(varied_dir, varied_archive):
    files = ferry.restore_files(varied_archive)
    assert sorted(files) == ["config.json"]
    view = files["config.json"]
    assert not view.readonly
    assert bytes(view) == (varied_dir / "config.json").read_bytes()


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


# The .ferry archive (docs/FORMAT.md section 6): an 8-byte header, then the
# frames, each an 88-byte header and its payload.
ARCHIVE_HEADER_BYTES = 8
FRAME_HEADER_BYTES = 88


@pytest.mark.parametrize("where", ["payload", "header"])
def test_flipped_byte_raises_corruption_naming_the_chunk(varied_archive, tmp_path, where):
    bad = tmp_path / "bad.ferry"
    bad.write_bytes(varied_archive.read_bytes())
    offset = ARCHIVE_HEADER_BYTES + (FRAME_HEADER_BYTES + 1 if where == "payload" else 40)
    flip_byte(bad, offset)
    with pytest.raises(ferry.CorruptionError, match=r"chunk [0-9a-f]{16}") as info:
        ferry.load(bad, device="cpu")
    assert isinstance(info.value, RuntimeError)
    assert "config.json" in str(info.value)  # the first frame is the first file's
    with pytest.raises(ferry.CorruptionError):
        ferry.restore_files(bad)


def test_missing_archive_and_bad_arguments(tmp_path, varied_archive):
    with pytest.raises(ferry.FerryError, match="nope.ferry"):
        ferry.load(tmp_path / "nope.ferry", device="cpu")
    with pytest.raises(ferry.FerryError, match="tpu"):
        ferry.load(varied_archive, device="tpu:0")
    with pytest.raises(ferry.FerryError, match="engine|warp"):
        ferry.load(varied_archive, device="cpu", engine="warp")
    with pytest.raises(ValueError, match="FERRY_CA"):
        ferry.load("ferry://127.0.0.1:1/snap", device="cpu")


def test_restore_releases_the_gil(tmp_path, pack, test_seed):
    """Another Python thread runs while a restore is under way."""
    g = torch.Generator().manual_seed(test_seed + 4)
    d = tmp_path / "big"
    d.mkdir()
    safetensors_torch.save_file({"w": (torch.randn(4096, 1024, generator=g) * 0.02).bfloat16()}, str(d / "w.safetensors"))
    archive = pack(d, tmp_path / "big.ferry", chunk_size=SMALL_CHUNK_BYTES)
    window = {}

    def restore():
        window["start"] = time.monotonic()
        window["result"] = _ext.restore(str(archive), "cpu")
        window["end"] = time.monotonic()

    ticks = []
    worker = threading.Thread(target=restore)
    worker.start()
    while worker.is_alive():
        ticks.append(time.monotonic())
        time.sleep(0.0005)
    worker.join()
    during = [t for t in ticks if window["start"] < t < window["end"]]
    assert during, f"no Python ran during the {window['end'] - window['start']:.3f} s restore"


def test_cuda_without_a_gpu_raises_with_the_reason(varied_archive):
    if torch.cuda.is_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match=r"cuda:0 asked for, but no GPU is usable here: .+"):
        ferry.load(varied_archive, device="cuda:0")
    # The default device is the host, which every machine has.
    assert ferry.load(varied_archive)["scalar"].device.type == "cpu"
    # device=None picks the host when no GPU is usable.
    assert ferry.load(varied_archive, device=None)["scalar"].device.type == "cpu"


def test_remote_load_equals_local(varied_dir, varied_archive, receiver, monkeypatch):
    snapshot = receiver.push(varied_dir, "varied-1")
    local = ferry.load(varied_archive, device="cpu")
    remote = ferry.load(receiver.url(snapshot), device="cpu", streams=3, **receiver.certs.client_kwargs())
    assert_same_tensors(remote, local)
    assert bytes(ferry.restore_files(receiver.url(snapshot), **receiver.certs.client_kwargs())["config.json"]) == (
        varied_dir / "config.json"
    ).read_bytes()

    # Certificates from the environment.
    monkeypatch.setenv("FERRY_CA", str(receiver.certs.ca))
    monkeypatch.setenv("FERRY_CERT", str(receiver.certs.host_cert))
    monkeypatch.setenv("FERRY_KEY", str(receiver.certs.host_key))
    assert_same_tensors(ferry.load(receiver.url(snapshot), device="cpu"), local)

    with pytest.raises(ferry.FerryError, match="no-such-snapshot"):
        ferry.load(receiver.url("no-such-snapshot"), device="cpu")


def test_unreachable_receiver_names_the_peer(certs, fresh_receiver):
    url = fresh_receiver.url("any")
    fresh_receiver.stop()  # nothing listens on its port now
    with pytest.raises(ferry.FerryError, match=re.escape(fresh_receiver.address)):
        ferry.load(url, device="cpu", **certs.client_kwargs())


def test_store_load_equals_local(varied_dir, varied_archive, fresh_receiver):
    snapshot = fresh_receiver.push(varied_dir, "varied-store")
    fresh_receiver.stop()  # a running receiver holds its store's lock
    local = ferry.load(varied_archive, device="cpu")
    assert_same_tensors(ferry.load(fresh_receiver.store_location(snapshot), device="cpu"), local)
    with pytest.raises(ferry.FerryError, match="missing-snapshot"):
        ferry.load(fresh_receiver.store_location("missing-snapshot"), device="cpu")


def _ceph_env():
    """The AWS_* settings of the test Ceph cluster (ctest's ceph fixture
    names its env file in FERRY_CEPH_ENV), or a skip saying why not."""
    path = os.environ.get("FERRY_CEPH_ENV")
    if not path or not os.path.exists(path):
        pytest.skip("no Ceph cluster: FERRY_CEPH_ENV names none (ctest starts one with scripts/ceph-dev.sh)")
    env = {}
    for line in Path(path).read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


def test_s3_load_equals_local(varied_dir, varied_archive, run_ferry, monkeypatch):
    """ferry.load("s3://BUCKET/PREFIX/NAMESPACE/SNAPSHOT") reads a snapshot
    that `ferry push --to=s3://` wrote straight into a real Ceph bucket."""
    env = _ceph_env()
    boto3 = pytest.importorskip("boto3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"ferry-py-{os.getpid()}-{int(time.time() * 1000) % 10**9}"
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"]).create_bucket(
        Bucket=bucket
    )
    run_ferry("push", varied_dir, f"--to=s3://{bucket}/site-a", "--namespace=trainer-01", "--name=varied-s3",
              f"--chunk_size={SMALL_CHUNK_BYTES}")
    local = ferry.load(varied_archive, device="cpu")
    url = f"s3://{bucket}/site-a/trainer-01/varied-s3"
    assert_same_tensors(ferry.load(url, device="cpu"), local)
    assert bytes(ferry.restore_files(url)["config.json"]) == (varied_dir / "config.json").read_bytes()
    with pytest.raises(ferry.FerryError, match="missing-snapshot"):
        ferry.load(f"s3://{bucket}/site-a/trainer-01/missing-snapshot", device="cpu")
    with pytest.raises(ferry.FerryError, match="NoSuchBucket"):
        ferry.load(f"s3://{bucket}-absent/site-a/trainer-01/varied-s3", device="cpu")


def test_corpus_weights_equal_load_file(corpus_dir, corpus_files, pack, tmp_path):
    archive = pack(corpus_dir, tmp_path / "corpus.ferry")
    got = ferry.load(archive, device="cpu")
    expected = {}
    st_files = [f for f in corpus_files if f.suffix == ".safetensors"]
    if not st_files:
        pytest.skip(f"no safetensors file in {corpus_dir}")
    for f in st_files:
        part = safetensors_torch.load_file(str(f))
        assert not set(part) & set(expected), f"tensor names repeat across corpus files ({f})"
        expected.update(part)
    assert_same_tensors(got, expected)
    files = ferry.restore_files(archive)
    for f in corpus_files:
        if f.suffix != ".safetensors":
            assert bytes(files[f.name]) == f.read_bytes(), f.name


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_gpu_load_equals_safetensors_on_cuda(tmp_path, pack, test_seed, dtype):
    if not torch.cuda.is_available():
        pytest.skip("no GPU usable by PyTorch here (torch.cuda.is_available() is False)")
    g = torch.Generator().manual_seed(test_seed + 3)
    d = tmp_path / "gpu"
    d.mkdir()
    dt = getattr(torch, dtype)
    tensors = {
        f"model.layers.{i}.{p}": (torch.randn(*shape, generator=g) * 0.02).to(dt)
        for i in range(2)
        for p, shape in (("q.weight", (512, 512)), ("up.weight", (1376, 512)), ("norm.weight", (512,)))
    }
    tensors["scalar"] = torch.tensor(1.0, dtype=dt)
    tensors["empty"] = torch.empty(0, 8, dtype=dt)
    safetensors_torch.save_file(tensors, str(d / "model.safetensors"))
    archive = pack(d, tmp_path / "gpu.ferry", chunk_size=SMALL_CHUNK_BYTES)
    got = ferry.load(archive, device="cuda:0")
    expected = safetensors_torch.load_file(str(d / "model.safetensors"), device="cuda:0")
    assert_same_tensors(got, expected, device_type="cuda")
