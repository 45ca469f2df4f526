"""Shared fixtures for the Python tests: the built `ferry` binary (FERRY_BIN),
packing with it, certificates made by `ferry certs`, a real `ferry serve`
receiver on loopback, the real-weights corpus (FERRY_CORPUS_DIR) and the
test seed. Generic on purpose: every test file in tests/python uses them.

A fixture whose prerequisite is absent skips the test with the reason, so a
missing binary or corpus is reported as skipped, never as passed.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

# How long a child is given to report that it is ready.
READY_TIMEOUT_S = 30.0
# How long a stopping receiver is given before SIGKILL.
STOP_TIMEOUT_S = 10.0
# How long a `ferry` subcommand may run in a test.
COMMAND_TIMEOUT_S = 300.0
# The host name `ferry certs` makes a certificate for: its namespace at the receiver.
TEST_HOST = "pyhost"


def _seed() -> int:
    """FERRY_TEST_SEED when set (to replay a failure), else a fixed seed."""
    return int(os.environ.get("FERRY_TEST_SEED", "20261125"), 0)


def pytest_report_header(config):
    return f"ferry test seed: {_seed()} (replay with FERRY_TEST_SEED={_seed()})"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU usable by PyTorch (run by the python_gpu ctest entry)")


# ctest runs pytest as one test: a run in which every test skipped (no torch,
# no GPU) must show up there as skipped, not passed. With
# FERRY_PYTEST_ALL_SKIPPED_EXIT=N set, such a run exits with N, which the
# ctest entry declares as its SKIP_RETURN_CODE; -rs prints the reasons.
_outcomes = {"passed": 0, "skipped": 0}


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _outcomes["passed"] += 1
    elif report.skipped:
        _outcomes["skipped"] += 1


def pytest_sessionfinish(session, exitstatus):
    code = os.environ.get("FERRY_PYTEST_ALL_SKIPPED_EXIT")
    if code and exitstatus == 0 and _outcomes["passed"] == 0 and _outcomes["skipped"] > 0:
        session.exitstatus = int(code)


@pytest.fixture(scope="session")
def test_seed() -> int:
    return _seed()


@pytest.fixture
def rng(test_seed) -> random.Random:
    return random.Random(test_seed)


@pytest.fixture
def torch_rng(test_seed):
    """A seeded torch.Generator (CPU)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator()
    g.manual_seed(test_seed)
    return g


def _find_binary(env: str, relative: str) -> Optional[Path]:
    value = os.environ.get(env)
    if value:
        return Path(value)
    build = os.environ.get("FERRY_BUILD_DIR")
    if build and (Path(build) / relative).exists():
        return Path(build) / relative
    return None


@pytest.fixture(scope="session")
def ferry_bin() -> Path:
    path = _find_binary("FERRY_BIN", "tools/ferry")
    if path is None or not path.exists():
        pytest.skip("the ferry binary is not built (set FERRY_BIN or FERRY_BUILD_DIR)")
    return path


@pytest.fixture(scope="session")
def ferry_agent_bin() -> Path:
    path = _find_binary("FERRY_AGENT_BIN", "tools/ferry-agent")
    if path is None or not path.exists():
        pytest.skip("the ferry-agent binary is not built (set FERRY_AGENT_BIN)")
    return path


class FerryCommandError(AssertionError):
    pass


@pytest.fixture(scope="session")
def run_ferry(ferry_bin):
    """run_ferry(*args) -> CompletedProcess; fails the test with stderr on a
    non-zero exit unless check=False."""

    def run(*args, check: bool = True, timeout: float = COMMAND_TIMEOUT_S):
        argv = [str(ferry_bin), *map(str, args)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise FerryCommandError(
                f"{' '.join(argv)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def pack(run_ferry):
    """pack(src, out, chunk_size=None, **flags) -> out: `ferry pack SRC -o OUT`."""

    def do(src, out, chunk_size: Optional[int] = None, **flags) -> Path:
        args = ["pack", src, "-o", out]
        if chunk_size is not None:
            args.append(f"--chunk_size={chunk_size}")
        args += [f"--{k}={v}" for k, v in flags.items()]
        run_ferry(*args)
        return Path(out)

    return do


@dataclass
class Certs:
    dir: Path
    ca: Path
    receiver_cert: Path
    receiver_key: Path
    host_cert: Path
    host_key: Path
    host: str = TEST_HOST

    def client_kwargs(self) -> Dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.host_cert), "key": str(self.host_key)}

    def client_flags(self) -> List[str]:
        return [f"--ca={self.ca}", f"--cert={self.host_cert}", f"--key={self.host_key}"]


@pytest.fixture(scope="session")
def certs(run_ferry, tmp_path_factory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    run_ferry("certs", f"--dir={d}", f"--hosts={TEST_HOST}")
    return Certs(
        dir=d,
        ca=d / "ca.pem",
        receiver_cert=d / "receiver.pem",
        receiver_key=d / "receiver.key",
        host_cert=d / f"host-{TEST_HOST}.pem",
        host_key=d / f"host-{TEST_HOST}.key",
    )


@dataclass
class Receiver:
    """A running `ferry serve` on 127.0.0.1 with a store in a temporary folder."""

    process: subprocess.Popen
    address: str
    store: Path
    certs: Certs
    log: Path
    run_ferry: object = field(repr=False)
    log_file: object = field(repr=False, default=None)

    def push(self, src, name: str, **flags) -> str:
        """`ferry push SRC` to this receiver as snapshot `name`; returns its name."""
        args = ["push", src, f"--to={self.address}", f"--name={name}", *self.certs.client_flags()]
        args += [f"--{k}={v}" for k, v in flags.items()]
        out = self.run_ferry(*args).stdout
        m = re.search(r"^push-report snapshot=(\S+)", out, re.M)
        assert m, f"no push-report line in: {out}"
        return m.group(1)

    def url(self, snapshot: str) -> str:
        return f"ferry://{self.address}/{snapshot}"

    def store_location(self, snapshot: str) -> str:
        """The snapshot in the store itself (readable once the receiver stopped)."""
        return f"store:{self.store}/{self.certs.host}/{snapshot}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        if self.log_file:
            self.log_file.close()


def _launch_receiver(ferry_bin, run_ferry, certs: Certs, folder: Path) -> "Receiver":
    """Starts `ferry serve` on 127.0.0.1 (a port the kernel picks) with a store
    under `folder` and waits for its "listening on" line."""
    folder.mkdir(parents=True, exist_ok=True)
    store, log = folder / "store", folder / "serve.log"
    log_file = open(log, "ab")
    proc = subprocess.Popen(
        [
            str(ferry_bin), "serve", f"--store={store}", f"--ca={certs.ca}",
            f"--cert={certs.receiver_cert}", f"--key={certs.receiver_key}", "--listen=127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    receiver = Receiver(proc, "", store, certs, log, run_ferry, log_file)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break  # it exited
        m = re.match(r"ferry serve: listening on (127\.0\.0\.1:\d+)", line)
        if m:
            receiver.address = m.group(1)
            return receiver
    receiver.stop()
    pytest.fail(f"ferry serve did not start: {log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def receiver(ferry_bin, run_ferry, certs, tmp_path_factory):
    """A receiver shared by the tests of one module."""
    r = _launch_receiver(ferry_bin, run_ferry, certs, tmp_path_factory.mktemp("receiver"))
    yield r
    r.stop()


@pytest.fixture
def fresh_receiver(ferry_bin, run_ferry, certs, tmp_path):
    """A receiver of this test's own (a test may stop it, e.g. to read its store)."""
    r = _launch_receiver(ferry_bin, run_ferry, certs, tmp_path / "receiver")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    value = os.environ.get("FERRY_CORPUS_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip(
            "FERRY_CORPUS_DIR is not set (lay the corpus with "
            "shared/corpus/fetch-corpus.sh DIR --small and point FERRY_CORPUS_DIR at it)"
        )
    return Path(value)


@pytest.fixture(scope="session")
def corpus_files(corpus_dir) -> List[Path]:
    """The corpus files listed in corpus.tsv (or every file when it has none)."""
    tsv = corpus_dir / "corpus.tsv"
    files: List[Path] = []
    if tsv.exists():
        for line in tsv.read_text().splitlines()[1:]:
            name = line.split("\t", 1)[0]
            if name and (corpus_dir / name).is_file():
                files.append(corpus_dir / name)
    else:
        files = sorted(p for p in corpus_dir.rglob("*") if p.is_file())
    if not files:
        pytest.skip(f"no corpus files in {corpus_dir}")
    return files
