"""ferry-agent as an operator configures it, end to end: the shipped example
flag file (packaging/ferry-agent.flags.example) with only its site-specific
settings changed, a real `ferry serve`, and checkpoints written by real
PyTorch (dcp.save) and safetensors.

- The example names a marker file (COMMITTED) that these trainers never
  write: their DCP and safetensors checkpoints are replicated all the same,
  and a directory that never becomes complete is logged once
  (checkpoint_incomplete), shown by `ferry status`, counted in /metrics, and
  gives its job an RPO that grows (not 0) and warns. A job with nothing seen
  yet has an unknown RPO (null in status, NaN in /metrics).
- A typo in the flag file or on the command line exits 2 (the status the
  systemd unit does not restart) naming the setting, and the file and line.
- --validate names every problem on its own line; --help and --version
  print and exit 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")
safetensors_torch = pytest.importorskip("safetensors.torch")
ferry = pytest.importorskip("ferry")

REPLICATE_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 30.0
# A misconfigured agent must exit at once; one still running after this did
# not refuse its configuration.
REFUSAL_TIMEOUT_S = 20.0
EXIT_BAD_CONFIGURATION = 2

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def source_dir() -> Path:
    return Path(os.environ.get("FERRY_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def example_flags(path: Path, settings: Dict[str, str], extra: str = "") -> Path:
    """The example flag file with `settings` replaced (each must be in it, so
    the example keeps naming them), plus `extra` lines at the end."""
    todo = dict(settings)
    lines = []
    for line in (source_dir() / "packaging" / "ferry-agent.flags.example").read_text().splitlines():
        m = re.match(r"--(\w+)=", line)
        if m and m.group(1) in todo:
            line = f"--{m.group(1)}={todo.pop(m.group(1))}"
        lines.append(line)
    assert not todo, f"the example flag file no longer sets {sorted(todo)}"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def site_settings(tmp_path: Path, certs, receiver, roots: Dict[str, Path]) -> Dict[str, str]:
    """What each site edits in the example, for this test's machine."""
    return {
        "watch": ",".join(f"{root}={job}" for job, root in roots.items()),
        "targets": receiver.address,
        "ca": str(certs.ca),
        "cert": str(certs.host_cert),
        "key": str(certs.host_key),
        "state_dir": str(tmp_path / "state"),
        "control_socket": str(tmp_path / "ctl.sock"),
        "metrics_listen": "127.0.0.1:0",
        "nice": "0",
        "io_class": "best-effort",
        "rescan_interval_s": "0.5",
        "incomplete_grace_s": "1",
    }


class Agent:
    def __init__(self, binary: Path, args: List[str], log: Path):
        self.log = log
        self._log_file = open(log, "ab")
        self.proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, stderr=self._log_file, text=True)
        self.metrics_port = 0
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"ferry-agent: ready .*metrics_port=(\d+)", line)
            if m:
                self.metrics_port = int(m.group(1))
                return
        self.stop()
        pytest.fail(f"ferry-agent did not start: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log_file.close()
        return self.proc.returncode


def wait_for(predicate, what: str, agent: Agent, timeout_s: float = REPLICATE_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; agent log:\n{agent.log_text()}")


def snapshots(run_ferry, receiver) -> set:
    listed = run_ferry("list", f"--from={receiver.address}", *receiver.certs.client_flags(), check=False).stdout
    return set(re.findall(r"^(\S+)\s", listed, re.M))


def write_safetensors_set(d: Path, tensors: Dict[str, "torch.Tensor"]) -> None:
    """Two shards, then the index that makes the set complete, as
    save_pretrained writes them."""
    d.mkdir()
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        safetensors_torch.save_file({k: tensors[k].contiguous() for k in part}, str(d / shard))
        weight_map.update({k: shard for k in part})
    tmp = d / "model.safetensors.index.json.tmp"
    tmp.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    os.rename(tmp, d / "model.safetensors.index.json")


def test_example_flag_file_replicates_dcp_and_safetensors_and_reports_what_never_completes(
    ferry_agent_bin, run_ferry, certs, fresh_receiver, tmp_path, torch_rng
):
    roots = {"llama": tmp_path / "llama", "stuck": tmp_path / "stuck", "idle": tmp_path / "idle"}
    for root in roots.values():
        root.mkdir()
    settings = site_settings(tmp_path, certs, fresh_receiver, roots)
    settings["rpo_target_s"] = "3"
    flags = example_flags(tmp_path / "agent.flags", settings)
    assert "--marker_file=COMMITTED" in flags.read_text()
    agent = Agent(ferry_agent_bin, [f"--flagfile={flags}"], tmp_path / "agent.log")
    try:
        # The trainers write no marker: DCP completes with .metadata, the
        # safetensors set with its index.
        model = {
            "embed.weight": torch.randn(256, 64, generator=torch_rng).bfloat16(),
            "proj.weight": torch.randn(64, 64, generator=torch_rng),
        }
        optim = {"state": {"proj.weight": {"exp_avg": torch.randn(64, 64, generator=torch_rng),
                                           "step": torch.tensor(100.0)}}}
        dcp.save({"model": model, "optim": optim}, checkpoint_id=str(roots["llama"] / "step-100"))
        write_safetensors_set(roots["llama"] / "step-200", model)
        # A save that died before DCP wrote .metadata: never complete.
        (roots["stuck"] / "step-5").mkdir()
        (roots["stuck"] / "step-5" / "__0_0.distcp").write_bytes(os.urandom(4096))

        wait_for(lambda: {"llama-step-100", "llama-step-200"} <= snapshots(run_ferry, fresh_receiver),
                 "llama-100 and llama-200 at the DR site", agent)
        tls = fresh_receiver.certs.client_kwargs()
        got = ferry.load(fresh_receiver.url("llama-step-100"), **tls)
        for name, t in model.items():
            assert torch.equal(got[f"model.{name}"], t), name
        assert torch.equal(got["optim.state.proj.weight.exp_avg"], optim["state"]["proj.weight"]["exp_avg"])
        got = ferry.load(fresh_receiver.url("llama-step-200"), **tls)
        assert sorted(got) == sorted(model) and all(torch.equal(got[k], v) for k, v in model.items())

        line = wait_for(
            lambda: re.search(r"^.*WARN checkpoint_incomplete job=stuck .*$", agent.log_text(), re.M),
            "checkpoint_incomplete for job stuck", agent,
        ).group(0)
        assert f"dir={roots['stuck'] / 'step-5'}" in line, line
        assert re.search(r"waiting_for=\"[^\"]*no \.metadata[^\"]*no marker COMMITTED", line), line

        def status_once_stuck_warns():
            # Exit status 6: the status shows a warning (an incomplete checkpoint here).
            p = run_ferry("status", "--json", f"--socket={tmp_path / 'ctl.sock'}", check=False)
            assert p.returncode in (0, 6), p.stderr
            s = json.loads(p.stdout)
            return s if any(j["job"] == "stuck" and j["warning"] for j in s["jobs"]) else None

        status = wait_for(status_once_stuck_warns, "the RPO warning of job stuck", agent)
        jobs = {j["job"]: j for j in status["jobs"]}
        # Nothing replicated, a directory seen: the RPO counts from it, never 0.
        assert jobs["stuck"]["rpo_seconds"] > 1, jobs["stuck"]
        assert jobs["stuck"]["incomplete"]["count"] == 1
        assert jobs["stuck"]["incomplete"]["oldest_dir"] == str(roots["stuck"] / "step-5")
        assert "never became complete" in jobs["stuck"]["warning_text"]
        # Nothing seen at all: unknown, not 0.
        assert jobs["idle"]["rpo_seconds"] is None, jobs["idle"]
        assert jobs["idle"]["incomplete"] is None and not jobs["idle"]["warning"]
        assert jobs["llama"]["newest_committed_step"] == 200
        assert jobs["llama"]["incomplete"] is None

        shown = run_ferry("status", f"--socket={tmp_path / 'ctl.sock'}", check=False)
        assert shown.returncode == 6, shown.stderr  # it shows a warning
        text = shown.stdout
        idle_row = next(l for l in text.splitlines() if l.startswith("idle "))
        assert " unknown " in idle_row, text
        stuck_row = next(l for l in text.splitlines() if l.startswith("stuck "))
        assert "WARNING" in stuck_row, text
        assert f"stuck: 1 checkpoint directory not complete for" in text, text
        assert f"oldest {roots['stuck'] / 'step-5'} waits for: " in text, text

        metrics = agent.metrics()
        # A job with no commit has no last-commit time (its age is unknown,
        # never 0); the warning says what status says.
        assert 'ferry_agent_last_commit_timestamp_seconds{ckpt_job="idle"}' not in metrics, metrics
        assert 'ferry_agent_last_commit_timestamp_seconds{ckpt_job="stuck"}' not in metrics, metrics
        assert 'ferry_agent_rpo_warning{ckpt_job="idle"} 0' in metrics, metrics
        assert 'ferry_agent_incomplete_checkpoints{ckpt_job="stuck"} 1' in metrics, metrics
        assert 'ferry_agent_rpo_warning{ckpt_job="stuck"} 1' in metrics, metrics
        llama_commit = float(re.search(
            r'^ferry_agent_last_commit_timestamp_seconds\{ckpt_job="llama"\} (\S+)$', metrics, re.M).group(1))
        assert time.time() - 600 < llama_commit <= time.time()

        # Logged once for the root, however many rescans pass.
        time.sleep(2)
        assert len(re.findall(r"checkpoint_incomplete job=stuck", agent.log_text())) == 1, agent.log_text()
    finally:
        code = agent.stop()
    assert code == 0, agent.log_text()


def run_agent(binary: Path, args: List[str]) -> subprocess.CompletedProcess:
    """The agent run to its end; one still running after REFUSAL_TIMEOUT_S
    did not refuse its configuration."""
    try:
        return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"ferry-agent {' '.join(args)} still running after {REFUSAL_TIMEOUT_S} s: {e.stderr}")


@pytest.fixture
def good_settings(certs, receiver, tmp_path) -> Dict[str, str]:
    roots = {"llama": tmp_path / "llama"}
    roots["llama"].mkdir()
    return site_settings(tmp_path, certs, receiver, roots)


def test_typo_in_the_flag_file_exits_2_naming_file_and_line(ferry_agent_bin, good_settings, tmp_path):
    flags = example_flags(tmp_path / "agent.flags", good_settings, extra="--rpo_taget_s=60\n--max_jobs=two\n")
    typo_line = len(flags.read_text().splitlines()) - 1
    r = run_agent(ferry_agent_bin, [f"--flagfile={flags}"])
    assert r.returncode == EXIT_BAD_CONFIGURATION, r.stderr
    assert f"{flags}:{typo_line}: unknown setting --rpo_taget_s; did you mean --rpo_target_s?" in r.stderr, r.stderr
    assert f"{flags}:{typo_line + 1}: --max_jobs=two: not an integer" in r.stderr, r.stderr
    assert "config_invalid" in r.stderr


def test_typo_on_the_command_line_exits_2_naming_it(ferry_agent_bin, good_settings, tmp_path):
    flags = example_flags(tmp_path / "agent.flags", good_settings)
    r = run_agent(ferry_agent_bin, [f"--flagfile={flags}", "--rpo_taget_s=60"])
    assert r.returncode == EXIT_BAD_CONFIGURATION, r.stderr
    assert "unknown setting --rpo_taget_s; did you mean --rpo_target_s?" in r.stderr, r.stderr


def test_validate_passes_a_good_configuration(ferry_agent_bin, good_settings, tmp_path):
    flags = example_flags(tmp_path / "agent.flags", good_settings)
    r = run_agent(ferry_agent_bin, [f"--flagfile={flags}", "--validate"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ferry-agent: configuration OK: 1 root(s), 1 target(s) reachable"), r.stdout
    assert "the marker file COMMITTED" in r.stdout and "a DCP .metadata" in r.stdout, r.stdout
    assert not (tmp_path / "ctl.sock").exists()  # nothing was started


def test_validate_names_every_problem_on_its_own_line(ferry_agent_bin, good_settings, tmp_path):
    settings = dict(good_settings)
    settings["targets"] = f"{settings['targets']},127.0.0.1:1"
    settings["max_jobs"] = "0"
    flags = example_flags(tmp_path / "agent.flags", settings, extra="--rpo_taget_s=60\n")
    text = flags.read_text().splitlines()
    max_jobs_line = next(i for i, l in enumerate(text, 1) if l.startswith("--max_jobs="))
    r = run_agent(ferry_agent_bin, [f"--flagfile={flags}", "--validate", f"--watch={tmp_path / 'nowhere'}"])
    assert r.returncode == EXIT_BAD_CONFIGURATION, r.stderr
    lines = r.stderr.splitlines()
    expected = [
        f"ferry-agent: {flags}:{len(text)}: unknown setting --rpo_taget_s; did you mean --rpo_target_s?",
        f"ferry-agent: --watch={tmp_path / 'nowhere'}: no such directory",
        f"ferry-agent: {flags}:{max_jobs_line}: --max_jobs=0: must be 1..64",
    ]
    for want in expected:
        assert want in lines, f"missing line {want!r} in:\n{r.stderr}"
    assert any(l.startswith("ferry-agent: --targets: 127.0.0.1:1 is not reachable: ") for l in lines), r.stderr
    assert len(lines) == 4, r.stderr


def test_help_and_version(ferry_agent_bin, run_ferry):
    r = run_agent(ferry_agent_bin, ["--help"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: ferry-agent "), r.stdout
    assert "  --rpo_target_s=SECONDS  (default: 3600)" in r.stdout
    assert "  --marker_file=NAME  (default: \"\")" in r.stdout
    assert "  --validate" in r.stdout
    assert "gflags" not in r.stdout and "gflags" not in r.stderr

    version_lines = [
        r"commit ([0-9a-f]{7,}|unknown)",
        r"build \S+, CUDA (on|off), static deps (on|off), sanitizers \S.*",
        r"engine (gpu|cpu) \(.+\)",
    ]
    r = run_agent(ferry_agent_bin, ["--version"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"ferry-agent {ferry.__version__}", r.stdout
    for line, pattern in zip(lines[1:], version_lines):
        assert re.fullmatch(pattern, line), (line, pattern)
    r = run_agent(ferry_agent_bin, ["--version", "--engine=cpu"])
    assert r.stdout.splitlines()[-1] == "engine cpu (--engine=cpu)", r.stdout

    out = run_ferry("--version").stdout.splitlines()
    assert out[0] == f"ferry {ferry.__version__}" and out[1] == lines[1] and out[2] == lines[2], out
    assert re.fullmatch(version_lines[2], out[3]), out
