"""PyTorch distributed checkpoints (DCP) and safetensors training checkpoints
through ferry, end to end.

A small real model (embedding, a transformer encoder layer, a head; part of
it in bfloat16) trains a few steps with AdamW. Its model and optimizer state
are saved with torch.distributed.checkpoint.save (one process, no process
group) and with safetensors, packed by the real `ferry pack`, served by a
real `ferry serve` for the ferry:// case, and read back through ferry:
ferry.load (a flat dict of tensors) and dcp.load with ferry.dcp.reader (the
model and optimizer restored in place). Every tensor is compared with
torch.equal to what was saved, and the restored model and optimizer take the
next training step exactly as the originals do.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import warnings

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")
safetensors_torch = pytest.importorskip("safetensors.torch")
ferry = pytest.importorskip("ferry")
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict  # noqa: E402

# Small chunks, so that the .distcp file spans several chunks and frames.
SMALL_CHUNK_BYTES = 64 << 10
TRAIN_STEPS = 3
# DCP warns that it runs without a process group: single-process is the point.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


class TinyLM(torch.nn.Module):
    def __init__(self, vocab=97, width=64):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        # No dropout: a training step must be deterministic to compare two.
        self.block = torch.nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=128, dropout=0.0,
                                                      batch_first=True)
        self.head = torch.nn.Linear(width, vocab)
        self.head.to(torch.bfloat16)

    def forward(self, tokens):
        h = self.block(self.embed(tokens))
        return self.head(h.to(torch.bfloat16)).float()


def make_model(seed: int):
    torch.manual_seed(seed)
    model = TinyLM()
    return model, torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)


def train_step(model, optimizer, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 97, (4, 16), generator=g)
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), tokens[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def flat_tensors(obj, prefix=""):
    """{dotted.key.path: tensor}, the way DCP names a nested state dict's entries."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flat_tensors(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def assert_equal_tensors(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name, e in expected.items():
        a = actual[name]
        assert a.dtype == e.dtype, name
        assert a.shape == e.shape, name
        assert a.device.type == "cpu", name
        assert torch.equal(a, e), name


class Trained:
    """The model and optimizer after TRAIN_STEPS steps, and their state dicts
    as DCP sees them (get_state_dict: optimizer state keyed by parameter name)."""

    def __init__(self, seed: int):
        self.model, self.optimizer = make_model(seed)
        for step in range(TRAIN_STEPS):
            train_step(self.model, self.optimizer, seed + step)
        msd, osd = get_state_dict(self.model, self.optimizer)
        self.state = {"model": msd, "optim": osd}
        # Copies: what was saved, whatever happens to the live objects later.
        self.expected = {k: v.detach().clone() for k, v in flat_tensors(self.state).items()}


@pytest.fixture(scope="module")
def trained(test_seed):
    return Trained(test_seed)


@pytest.fixture(scope="module")
def dcp_dir(trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("dcp") / "step-3"
    dcp.save(trained.state, checkpoint_id=str(d))
    assert (d / ".metadata").is_file() and list(d.glob("*.distcp"))
    return d


@pytest.fixture(scope="module")
def dcp_archive(dcp_dir, pack, tmp_path_factory):
    return pack(dcp_dir, tmp_path_factory.mktemp("dcp-archive") / "step-3.ferry", chunk_size=SMALL_CHUNK_BYTES)


@pytest.fixture(scope="module")
def safetensors_dir(trained, tmp_path_factory):
    """The same state as safetensors: the model and the optimizer state each
    in its own file, flat names as above."""
    d = tmp_path_factory.mktemp("st") / "step-3"
    d.mkdir()
    model = {k: v for k, v in trained.expected.items() if k.startswith("model.")}
    optim = {k: v for k, v in trained.expected.items() if k.startswith("optim.")}
    safetensors_torch.save_file(model, str(d / "model.safetensors"))
    safetensors_torch.save_file(optim, str(d / "optimizer.safetensors"))
    return d


def restore_in_place(reader, seed: int):
    """A fresh model and optimizer (other weights), loaded through dcp.load
    the way a trainer resumes."""
    model, optimizer = make_model(seed)
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    dcp.load(state, storage_reader=reader)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return model, optimizer


def assert_resumes_like(trained, model, optimizer, seed: int):
    """The restored pair equals the saved one, param_groups included, and the
    next step gives the same loss and the same weights."""
    msd, osd = get_state_dict(model, optimizer)
    assert_equal_tensors(flat_tensors({"model": msd, "optim": osd}), trained.expected)
    assert osd["param_groups"][0]["lr"] == 3e-3 and osd["param_groups"][0]["weight_decay"] == 0.1
    # A deep copy: the optimizer would otherwise share (and advance) the
    # saved state's tensors.
    saved = copy.deepcopy(trained.state)
    original_model, original_opt = make_model(seed)
    set_state_dict(original_model, original_opt, model_state_dict=saved["model"],
                   optim_state_dict=saved["optim"])
    loss_a = train_step(original_model, original_opt, 1000)
    loss_b = train_step(model, optimizer, 1000)
    assert loss_a == loss_b
    for (name, a), (_, b) in zip(original_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_reads_a_dcp_checkpoint_as_flat_tensors_on_the_host(trained, dcp_archive):
    got = ferry.load(dcp_archive)  # the default device is the host
    assert_equal_tensors(got, trained.expected)
    assert any(t.dtype == torch.bfloat16 for t in got.values())
    assert "optim.state.head.weight.exp_avg_sq" in got


def test_dcp_load_through_the_reader_resumes_training(trained, dcp_archive, test_seed):
    reader = ferry.dcp.reader(str(dcp_archive))
    model, optimizer = restore_in_place(reader, test_seed + 7)
    assert_resumes_like(trained, model, optimizer, test_seed + 7)


def test_dcp_from_a_receiver_over_mtls(trained, dcp_dir, receiver, test_seed):
    snapshot = receiver.push(dcp_dir, "dcp-3")
    url = receiver.url(snapshot)
    tls = receiver.certs.client_kwargs()
    assert_equal_tensors(ferry.load(url, **tls), trained.expected)
    model, optimizer = restore_in_place(ferry.dcp.reader(url, streams=2, **tls), test_seed + 8)
    assert_resumes_like(trained, model, optimizer, test_seed + 8)


def test_dcp_from_a_stopped_receivers_store(trained, dcp_dir, fresh_receiver):
    snapshot = fresh_receiver.push(dcp_dir, "dcp-store")
    fresh_receiver.stop()  # a running receiver holds its store's lock
    location = fresh_receiver.store_location(snapshot)
    assert_equal_tensors(ferry.load(location), trained.expected)
    reader = ferry.dcp.reader(location)
    state = {k: torch.empty_like(v) for k, v in trained.expected.items() if k.startswith("model.")}
    dcp.load(state, storage_reader=reader)
    for name, t in state.items():
        assert torch.equal(t, trained.expected[name]), name


def test_safetensors_training_checkpoint_locally_and_over_mtls(trained, safetensors_dir, pack, receiver, tmp_path):
    archive = pack(safetensors_dir, tmp_path / "st.ferry", chunk_size=SMALL_CHUNK_BYTES)
    assert_equal_tensors(ferry.load(archive), trained.expected)
    snapshot = receiver.push(safetensors_dir, "st-3")
    assert_equal_tensors(ferry.load(receiver.url(snapshot), **receiver.certs.client_kwargs()), trained.expected)


def test_several_dcp_checkpoints_in_one_snapshot(trained, tmp_path, pack):
    """Model and optimizer as two DCP directories beside a safetensors file:
    ferry.load merges them, reader() wants path= to pick one."""
    top = tmp_path / "ckpt"
    dcp.save({"model": trained.state["model"]}, checkpoint_id=str(top / "model"))
    dcp.save({"optim": trained.state["optim"]}, checkpoint_id=str(top / "optim"))
    extra = {"rng": torch.arange(5, dtype=torch.int64)}
    safetensors_torch.save_file(extra, str(top / "extra.safetensors"))
    archive = pack(top, tmp_path / "two.ferry", chunk_size=SMALL_CHUNK_BYTES)

    assert_equal_tensors(ferry.load(archive), {**trained.expected, **extra})
    with pytest.raises(ferry.FerryError, match=r"2 DCP checkpoints \(model, optim\); pass path="):
        ferry.dcp.reader(archive)
    with pytest.raises(ferry.FerryError, match=r"no DCP checkpoint .* in nowhere; found: model, optim"):
        ferry.dcp.reader(archive, path="nowhere")
    reader = ferry.dcp.reader(archive, path="optim")
    state = {k: torch.zeros_like(v) for k, v in trained.expected.items() if k.startswith("optim.")}
    dcp.load(state, storage_reader=reader)
    for name, t in state.items():
        assert torch.equal(t, trained.expected[name]), name
    assert ferry.restore_files(archive)["model/.metadata"]  # the files themselves stay reachable


def test_snapshot_without_dcp_is_named(tmp_path, pack):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "config.json").write_text("{}")
    # Another tool's .metadata (not a pickle) is a plain file, not DCP.
    (d / ".metadata").write_text('{"tool": "not dcp"}')
    safetensors_torch.save_file({"w": torch.ones(3)}, str(d / "w.safetensors"))
    archive = pack(d, tmp_path / "plain.ferry")
    with pytest.raises(ferry.FerryError, match=r"holds no DCP checkpoint \(no \.metadata file written by DCP\)"):
        ferry.dcp.reader(archive)
    assert_equal_tensors(ferry.load(archive), {"w": torch.ones(3)})
    assert bytes(ferry.restore_files(archive)[".metadata"]) == (d / ".metadata").read_bytes()


class _RunsCode:
    """A pickle that would run a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def test_a_metadata_pickle_cannot_run_code(tmp_path, pack):
    d = tmp_path / "evil"
    d.mkdir()
    marker = tmp_path / "ran"
    (d / ".metadata").write_bytes(pickle.dumps(_RunsCode(marker)))
    (d / "__0_0.distcp").write_bytes(b"\0" * 64)
    archive = pack(d, tmp_path / "evil.ferry")
    with pytest.raises(ferry.FerryError, match=r"refusing to unpickle subprocess\.call"):
        ferry.load(archive)
    with pytest.raises(ferry.FerryError, match=r"refusing to unpickle"):
        ferry.dcp.reader(archive).read_metadata()
    assert not marker.exists()


def test_default_device_is_the_host_and_version_is_set(dcp_archive, run_ferry):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no GPU warning, no DCP warning either
        got = ferry.load(dcp_archive)
    assert {t.device.type for t in got.values()} == {"cpu"}
    first = run_ferry("--version").stdout.splitlines()[0]
    assert first == f"ferry {ferry.__version__}", first
