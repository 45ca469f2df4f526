"""Delta frames end to end with real training checkpoints: a small
transformer trained here with real PyTorch (AdamW), checkpoints written at
several steps both with torch.distributed.checkpoint (model + optimizer
state) and as bf16 safetensors, pushed with `ferry push --delta_from` to a
real `ferry serve`, restored with `ferry restore` (and ferry.load when the
module is built) and loaded back equal (torch.equal) to what was saved.

Also: the earlier checkpoint modified or deleted on the host before the
push (full frames, same result), the base missing at the receiver (full
frames), scrub rebuilding the delta frames, and pruning the key snapshot
the deltas were made against, then gc: every kept snapshot still restores.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")

JOB = "deltajob"
STEPS = (20, 40, 60)


def _train(root: Path, seed: int):
    """Trains a byte-level transformer for STEPS[-1] steps on this file's own
    text and writes step-N/dcp (model + AdamW state) and step-N/st (bf16
    weights) at every step of STEPS; returns {step: (model_sd, optim_sd, bf16)}."""
    torch.manual_seed(seed)
    text = torch.tensor(list(Path(__file__).read_bytes()), dtype=torch.long)
    layer = torch.nn.TransformerEncoderLayer(96, 4, 384, batch_first=True, dropout=0.0)
    model = torch.nn.Sequential(
        torch.nn.Embedding(256, 96), torch.nn.TransformerEncoder(layer, 2), torch.nn.Linear(96, 256)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    saved = {}
    for step in range(1, STEPS[-1] + 1):
        ix = torch.randint(0, len(text) - 33, (8,))
        x = torch.stack([text[i : i + 32] for i in ix])
        y = torch.stack([text[i + 1 : i + 33] for i in ix])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in STEPS:
            d = root / f"step-{step}"
            model_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
            optim_sd = {
                f"{model_key}.{k}": opt.state[p][k].clone()
                for model_key, p in zip(dict(model.named_parameters()), model.parameters())
                for k in ("exp_avg", "exp_avg_sq")
            }
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(d / "dcp"))
            bf16 = {k: v.to(torch.bfloat16).contiguous() for k, v in model_sd.items()}
            (d / "st").mkdir(parents=True)
            safetensors_torch.save_file(bf16, str(d / "st" / "model.safetensors"))
            saved[step] = (model_sd, optim_sd, bf16)
    return saved


@pytest.fixture(scope="module")
def run(tmp_path_factory, test_seed):
    root = tmp_path_factory.mktemp("training")
    return root, _train(root, test_seed)


def _push(receiver, src: Path, name: str, **flags) -> dict:
    args = ["push", src, f"--to={receiver.address}", f"--name={name}", f"--job={JOB}", *receiver.certs.client_flags()]
    args += [f"--{k}={v}" for k, v in flags.items()]
    out = receiver.run_ferry(*args).stdout
    m = re.search(r"^push-report (.*)$", out, re.M)
    assert m, out
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def _restore(run_ferry, receiver, snapshot: str, out: Path) -> Path:
    run_ferry("restore", snapshot, f"--to={out}", f"--from={receiver.address}", *receiver.certs.client_flags())
    return out


def _assert_dcp_equal(restored: Path, model_sd, optim_sd):
    template = {
        "model": {k: torch.zeros_like(v) for k, v in model_sd.items()},
        "optim": {k: torch.zeros_like(v) for k, v in optim_sd.items()},
    }
    dcp.load(template, checkpoint_id=str(restored))
    for k, v in model_sd.items():
        assert torch.equal(template["model"][k], v), k
    for k, v in optim_sd.items():
        assert torch.equal(template["optim"][k], v), k


def _assert_st_equal(restored: Path, bf16):
    got = safetensors_torch.load_file(str(restored / "model.safetensors"))
    assert got.keys() == bf16.keys()
    for k, v in bf16.items():
        assert got[k].dtype == torch.bfloat16 and torch.equal(got[k], v), k


def test_deltas_pushed_restored_equal_scrubbed_and_kept_by_gc(run, run_ferry, fresh_receiver, tmp_path):
    root, saved = run
    r = fresh_receiver
    key = {kind: _push(r, root / "step-20" / kind, f"{kind}-20") for kind in ("dcp", "st")}
    assert key["st"]["delta_chunks"] == "0"
    for step in STEPS[1:]:
        for kind in ("dcp", "st"):
            rep = _push(r, root / f"step-{step}" / kind, f"{kind}-{step}", delta_from=root / "step-20" / kind)
            # Fewer bytes than the key snapshot, with delta frames.
            assert int(rep["delta_chunks"]) > 0, (kind, step, rep)
            assert int(rep["frame_bytes_sent"]) < int(key[kind]["frame_bytes_sent"]), (kind, step, rep)
    for step in STEPS:
        model_sd, optim_sd, bf16 = saved[step]
        _assert_dcp_equal(_restore(run_ferry, r, f"dcp-{step}", tmp_path / f"dcp-{step}"), model_sd, optim_sd)
        _assert_st_equal(_restore(run_ferry, r, f"st-{step}", tmp_path / f"st-{step}"), bf16)

    # Scrub rebuilds every delta frame from its base.
    r.stop()
    out = run_ferry("scrub", f"--store={r.store}").stdout
    assert out.startswith("OK"), out

    # The key snapshots (the two pushed first) go; their chunks stay while
    # the deltas need them.
    pruned = run_ferry(
        "prune", f"--store={r.store}", f"--namespace={r.certs.host}", f"--job={JOB}", "--keep_last=4",
        "--gc_grace_s=0",
    ).stdout
    assert "dcp-20" in pruned and "st-20" in pruned, pruned
    out = run_ferry("scrub", f"--store={r.store}").stdout
    assert out.startswith("OK"), out
    for step in STEPS[1:]:
        model_sd, optim_sd, bf16 = saved[step]
        _assert_dcp_equal(run_ferry_restore_store(run_ferry, r, f"dcp-{step}", tmp_path / f"g-dcp-{step}"), model_sd, optim_sd)
        _assert_st_equal(run_ferry_restore_store(run_ferry, r, f"st-{step}", tmp_path / f"g-st-{step}"), bf16)


def run_ferry_restore_store(run_ferry, receiver, snapshot: str, out: Path) -> Path:
    run_ferry("restore", receiver.store_location(snapshot), f"--to={out}")
    return out


def test_changed_or_deleted_base_and_missing_base_give_full_frames(run, run_ferry, fresh_receiver, tmp_path):
    root, saved = run
    r = fresh_receiver
    # Base missing at the receiver: step-20 was never pushed here.
    rep = _push(r, root / "step-40" / "st", "st-40", delta_from=root / "step-20" / "st")
    assert rep["delta_chunks"] == "0", rep
    _assert_st_equal(_restore(run_ferry, r, "st-40", tmp_path / "a"), saved[40][2])

    # The base pushed, then modified on the host (same layout, other
    # values): its chunks hash to ids the receiver does not hold.
    copy = tmp_path / "base"
    shutil.copytree(root / "step-20" / "st", copy)
    _push(r, copy, "st-20")
    changed = {k: (v.float() * 1.5).to(torch.bfloat16) for k, v in saved[20][2].items()}
    safetensors_torch.save_file(changed, str(copy / "model.safetensors"))
    rep = _push(r, root / "step-60" / "st", "st-60", delta_from=copy)
    assert rep["delta_chunks"] == "0", rep
    _assert_st_equal(_restore(run_ferry, r, "st-60", tmp_path / "b"), saved[60][2])

    # The base deleted on the host: full frames.
    (copy / "model.safetensors").unlink()
    rep = _push(r, root / "step-40" / "dcp", "dcp-40", delta_from=copy)
    assert rep["delta_chunks"] == "0", rep
    _assert_dcp_equal(_restore(run_ferry, r, "dcp-40", tmp_path / "c"), saved[40][0], saved[40][1])


def test_ferry_load_rebuilds_deltas(run, fresh_receiver):
    ferry = pytest.importorskip("ferry")
    root, saved = run
    r = fresh_receiver
    _push(r, root / "step-20" / "st", "st-20")
    _push(r, root / "step-20" / "dcp", "dcp-20")
    assert int(_push(r, root / "step-60" / "st", "st-60", delta_from=root / "step-20" / "st")["delta_chunks"]) > 0
    assert int(_push(r, root / "step-60" / "dcp", "dcp-60", delta_from=root / "step-20" / "dcp")["delta_chunks"]) > 0
    got = ferry.load(r.url("st-60"), device="cpu", **r.certs.client_kwargs())
    assert got.keys() == saved[60][2].keys()
    for k, v in saved[60][2].items():
        assert torch.equal(got[k], v), k
    got = ferry.load(r.url("dcp-60"), device="cpu", **r.certs.client_kwargs())
    model_sd, optim_sd, _ = saved[60]
    for k, v in model_sd.items():
        assert torch.equal(got[f"model.{k}"], v), k
    for k, v in optim_sd.items():
        assert torch.equal(got[f"optim.{k}"], v), k


def test_push_finds_its_base_at_the_receiver(run, run_ferry, fresh_receiver, tmp_path):
    """Without --delta_from: each push finds the job's key snapshot at the
    receiver by the directory it recorded (`ferry list` reads it back), a key
    every --key_every snapshots, none with --delta=off."""
    root, saved = run
    r = fresh_receiver
    first = _push(r, root / "step-20" / "st", "st-20", key_every=2)
    assert (first["kind"], first["base"], first["delta_chunks"]) == ("key", "-", "0"), first
    second = _push(r, root / "step-40" / "st", "st-40", key_every=2)
    assert (second["kind"], second["base"], second["chain_depth"]) == ("delta", "st-20", "1"), second
    assert int(second["delta_chunks"]) > 0 and int(second["delta_frame_bytes"]) < int(second["delta_logical_bytes"])
    third = _push(r, root / "step-60" / "st", "st-60", key_every=2)
    assert third["kind"] == "key", third  # the second after the key
    off = _push(r, root / "step-40" / "dcp", "dcp-40", delta="off")
    assert (off["kind"], off["delta_chunks"]) == ("key", "0"), off
    import json
    import os

    listed = run_ferry("list", f"--from={r.address}", "--json", *r.certs.client_flags()).stdout
    by_name = {j["snapshot"]: j for j in map(json.loads, listed.splitlines())}
    assert by_name["st-40"]["source_dir"] == os.path.abspath(root / "step-40" / "st")
    assert (by_name["st-40"]["kind"], by_name["st-40"]["base_snapshot"]) == ("delta", "st-20")
    for step in STEPS:
        _assert_st_equal(_restore(run_ferry, r, f"st-{step}", tmp_path / f"st-{step}"), saved[step][2])
