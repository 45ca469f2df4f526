"""Checkpoints written by real PyTorch, found and replicated by a real
ferry-agent to a real `ferry serve`, restored with `ferry restore` and loaded
back in PyTorch equal to what was saved:

- a torch.distributed.checkpoint directory (dcp.save, one process, no
  process group), complete once its .metadata exists;
- a sharded safetensors set written with the safetensors package, with its
  model.safetensors.index.json (weight_map naming every shard).

The binaries come from FERRY_BIN and FERRY_AGENT_BIN (ctest sets both); a
test without them is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")
safetensors_torch = pytest.importorskip("safetensors.torch")

# How long the agent is given to replicate every checkpoint.
REPLICATE_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 30.0
JOB = "pyjob"

# dcp.save/load without a process group is the single-process case on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def _state_dict(gen, scale: int):
    return {
        "embed.weight": torch.randn(512 * scale, 64, generator=gen, dtype=torch.float32).to(torch.bfloat16),
        "layer0.attn.weight": torch.randn(256, 256, generator=gen, dtype=torch.float32),
        "layer0.attn.bias": torch.randn(256, generator=gen, dtype=torch.float32).to(torch.float16),
        "layer0.norm.weight": torch.ones(256, dtype=torch.float32),
        "head.weight": torch.randn(64, 512 * scale, generator=gen, dtype=torch.float32).to(torch.bfloat16),
    }


@pytest.fixture
def agent(ferry_agent_bin, certs, fresh_receiver, tmp_path):
    """A ferry-agent watching tmp_path/ckpt as job JOB, replicating to
    fresh_receiver; stopped with SIGTERM at the end (it must exit 0)."""
    root = tmp_path / "ckpt"
    root.mkdir()
    log = tmp_path / "agent.log"
    log_file = open(log, "ab")
    proc = subprocess.Popen(
        [
            str(ferry_agent_bin), f"--watch={root}={JOB}", f"--targets={fresh_receiver.address}",
            *certs.client_flags(), f"--state_dir={tmp_path / 'state'}",
            f"--control_socket={tmp_path / 'ctl.sock'}", "--metrics_listen=", "--nice=0",
            "--io_class=best-effort", "--engine=cpu", "--skip_superseded=false", "--rescan_interval_s=1",
        ],
        stdout=subprocess.PIPE, stderr=log_file, text=True,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = False
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("ferry-agent: ready"):
            ready = True
            break
    if not ready:
        proc.kill()
        proc.wait()
        log_file.close()
        pytest.fail(f"ferry-agent did not start: {log.read_text(errors='replace')}")
    yield root, log
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        log_file.close()
    assert code == 0, f"ferry-agent exited {code} at SIGTERM: {log.read_text(errors='replace')}"


def _wait_for_snapshots(run_ferry, receiver, names, log: Path):
    deadline = time.monotonic() + REPLICATE_TIMEOUT_S
    listed = ""
    while time.monotonic() < deadline:
        listed = run_ferry("list", f"--from={receiver.address}", *receiver.certs.client_flags(), check=False).stdout
        have = set(re.findall(r"^(\S+)\s", listed, re.M))
        if all(n in have for n in names):
            return
        time.sleep(0.5)
    pytest.fail(f"not replicated: {names}\nlist: {listed}\nagent log: {log.read_text(errors='replace')}")


def _restore(run_ferry, receiver, snapshot: str, out: Path) -> Path:
    run_ferry("restore", snapshot, f"--to={out}", f"--from={receiver.address}", *receiver.certs.client_flags())
    return out


def test_dcp_and_safetensors_set_replicated_and_restored(agent, run_ferry, fresh_receiver, tmp_path, torch_rng):
    root, log = agent

    # A DCP checkpoint written in place, as a trainer does: the agent must
    # wait for .metadata, which dcp.save writes last.
    dcp_state = {"model": _state_dict(torch_rng, 2), "optim": {"lr": torch.tensor(3e-4), "step": torch.tensor(100)}}
    dcp.save(dcp_state, checkpoint_id=str(root / "step-100"))
    assert (root / "step-100" / ".metadata").exists()

    # A safetensors set: shards first, the index (which makes it complete) last.
    st_dir = root / "step-200"
    st_dir.mkdir()
    full = _state_dict(torch_rng, 3)
    names = sorted(full)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        safetensors_torch.save_file({k: full[k].contiguous() for k in keys}, str(st_dir / shard),
                                    metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    total = sum(t.numel() * t.element_size() for t in full.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    tmp_index = st_dir / "model.safetensors.index.json.tmp"
    tmp_index.write_text(json.dumps(index, indent=2))
    os.rename(tmp_index, st_dir / "model.safetensors.index.json")

    _wait_for_snapshots(run_ferry, fresh_receiver, [f"{JOB}-step-100", f"{JOB}-step-200"], log)

    # DCP: restored directory loads back into a zeroed template, equal.
    restored = _restore(run_ferry, fresh_receiver, f"{JOB}-step-100", tmp_path / "r100")
    template = {"model": {k: torch.zeros_like(v) for k, v in dcp_state["model"].items()},
                "optim": {"lr": torch.tensor(0.0), "step": torch.tensor(0)}}
    dcp.load(template, checkpoint_id=str(restored))
    for k, v in dcp_state["model"].items():
        assert torch.equal(template["model"][k], v), k
    assert torch.equal(template["optim"]["lr"], dcp_state["optim"]["lr"])
    assert torch.equal(template["optim"]["step"], dcp_state["optim"]["step"])

    # safetensors set: the index names every shard; every tensor equal.
    restored = _restore(run_ferry, fresh_receiver, f"{JOB}-step-200", tmp_path / "r200")
    got_index = json.loads((restored / "model.safetensors.index.json").read_text())
    assert got_index == index
    loaded = {}
    for shard in sorted(set(got_index["weight_map"].values())):
        loaded.update(safetensors_torch.load_file(str(restored / shard)))
    assert sorted(loaded) == names
    for k in names:
        assert loaded[k].dtype == full[k].dtype, k
        assert torch.equal(loaded[k], full[k]), k


def test_successive_training_checkpoints_become_delta_snapshots(agent, run_ferry, fresh_receiver, tmp_path, torch_rng):
    """A model trained with AdamW, checkpointed (dcp.save) every few steps
    into the watched root: the agent pushes the first as a key snapshot and
    the next ones as deltas against it, found by itself; `ferry list` and
    `ferry status` show it, and every checkpoint loads back equal."""
    root, log = agent
    torch.manual_seed(int(torch.randint(0, 1 << 30, (1,), generator=torch_rng)))
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 256))
    # Fine-tuning-sized steps: every weight moves, by little.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    saved = {}
    for step in range(1, 31):
        x = torch.randn(32, 256, generator=torch_rng)
        loss = (model(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
            dcp.save({"model": sd}, checkpoint_id=str(root / f"step-{step}"))
            saved[step] = sd
            # One at a time, so each push can find the one before it.
            _wait_for_snapshots(run_ferry, fresh_receiver, [f"{JOB}-step-{step}"], log)
    listed = run_ferry("list", f"--from={fresh_receiver.address}", "--json", *fresh_receiver.certs.client_flags())
    by_name = {j["snapshot"]: j for j in map(json.loads, listed.stdout.splitlines())}
    assert by_name[f"{JOB}-step-10"]["kind"] == "key", by_name
    for step in (20, 30):
        s = by_name[f"{JOB}-step-{step}"]
        assert (s["kind"], s["base_snapshot"]) == ("delta", f"{JOB}-step-10"), s
        assert s["source_dir"] == str(root / f"step-{step}"), s
    status = json.loads(run_ferry("status", f"--socket={root.parent / 'ctl.sock'}", "--json").stdout)
    job = next(j for j in status["jobs"] if j["job"] == JOB)
    assert job["delta"]["newest_kind"] == "delta" and job["delta"]["ratio"] > 1.0, job
    for step, sd in saved.items():
        restored = _restore(run_ferry, fresh_receiver, f"{JOB}-step-{step}", tmp_path / f"d{step}")
        template = {"model": {k: torch.zeros_like(v) for k, v in sd.items()}}
        dcp.load(template, checkpoint_id=str(restored))
        for k, v in sd.items():
            assert torch.equal(template["model"][k], v), k
