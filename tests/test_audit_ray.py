"""``ida-verify audit LIBRARY --ray [ADDRESS]``: the same rows as the process pool, from Ray
tasks on a local Ray instance the test starts; a missing Ray or an unreachable address is one
line and exit 2, never a hang.

The configurations are the package's own catalogue losses (``ida-verify audit catalogue``:
torch only, a second or two each), so that the Ray tests need no verl.  Without ray they
skip with one line naming the extra.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from properties.audit import core
from properties.audit.core import RayCluster, run_audit
from properties.cli import main

ROOT = Path(__file__).resolve().parents[1]

FEW = ["token-mean", "seq-mean-token-mean", "dr-grpo-trl"]
"""Catalogue losses: two biased (found in a second), one scaled (certified in a few)."""

SAME = ("name", "verdict", "constant", "cause", "unchecked", "group", "axes", "version")
"""What a row of the pool and a row of Ray must share (only ``seconds`` and ``report``'s
timings may differ)."""


def _ray() -> Any:
    pytest.importorskip("torch")
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install '.[ray]' runs the Ray tests)")
    return ray


def _only(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--only", name)]


def _cli(args: list[str], prelude: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    code = f"import sys; {prelude}\nfrom properties.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, check=False)


def _rows(payload: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(json.dumps(r[k], sort_keys=True) for k in SAME) for r in payload["rows"]]


def test_ray_on_an_existing_instance_gives_the_pools_rows(capsys: pytest.CaptureFixture[str]) -> None:
    ray = _ray()
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                       object_store_memory=core.RAY_LOCAL_OBJECT_STORE, logging_level=logging.ERROR)
    try:
        address = context.address_info["gcs_address"]
        done = _cli(["audit", "catalogue", "--ray", address, "--json", *_only(FEW)])
    finally:
        ray.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    on_ray = json.loads(done.stdout)
    assert on_ray["runner"] == f"on Ray ({address})"
    assert main(["audit", "catalogue", "--jobs", "2", "--json", *_only(FEW)]) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in on_ray["rows"]] == FEW
    assert _rows(on_ray) == _rows(pooled)
    assert on_ray["groups"] == pooled["groups"]
    assert {r["verdict"] for r in pooled["rows"]} == {"biased", "scaled"}


def test_ray_on_a_local_instance_it_starts_gives_the_pools_rows() -> None:
    ray = _ray()
    assert not ray.is_initialized()
    configs = [c for c in core.library_module("catalogue").configurations() if c.name in FEW[:2]]
    on_ray = run_audit(configs, "v", jobs=2, ray=RayCluster(num_cpus=1))
    assert not ray.is_initialized()  # the instance it started is shut down
    pooled = run_audit(configs, "v", jobs=2)
    untimed = [[dataclasses.replace(r, seconds=0.0) for r in rows] for rows in (on_ray, pooled)]
    assert untimed[0] == untimed[1]  # AuditRow's equality leaves out the report
    assert [r.name for r in on_ray] == FEW[:2]


def test_missing_ray_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    assert main(["audit", "catalogue", "--ray", "--only", "token-mean"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ida-verify[ray]'" in err


def test_an_unreachable_or_malformed_address_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _ray()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    assert main(["audit", "catalogue", "--ray", f"127.0.0.1:{port}", "--only", "token-mean"]) == 2
    assert main(["audit", "catalogue", "--ray", "nonsense", "--only", "token-mean"]) == 2
    assert time.perf_counter() - start < core.RAY_CONNECT_TIMEOUT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"ida-verify audit: cannot reach a Ray cluster at 127.0.0.1:{port}")
    assert "expected auto, HOST:PORT or ray://HOST:PORT" in err[1]


def test_an_address_that_never_answers_as_ray_times_out() -> None:
    """A port that accepts connections but is no Ray cluster: ``ray.init`` would retry for
    minutes; the audit gives up after its time limit, in one line, and the process exits."""
    _ray()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        start = time.perf_counter()
        done = _cli(["audit", "catalogue", "--ray", f"127.0.0.1:{port}", "--only", "token-mean"],
                    prelude="import properties.audit.core as c; c.RAY_CONNECT_TIMEOUT = 5.0",
                    timeout=120)
        seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert lines == [f"ida-verify audit: the Ray cluster at 127.0.0.1:{port} did not answer within 5 s"]
    assert seconds < 90


@pytest.mark.slow
def test_ray_gives_the_pools_rows_on_verl() -> None:
    """The same on verl's own configurations (a biased, a scaled-or-biased aggregation and a
    not-checked one), where each Ray worker imports verl as a pool's worker does."""
    ray = _ray()
    try:
        from properties.audit import verl as audit_verl

        version = audit_verl.version()
    except ImportError:
        pytest.skip("verl is not installed (pip install '.[verl]' runs the audit tests)")
    assert not ray.is_initialized()
    configs = [c for c in audit_verl.configurations()
               if c.name in ("adv:opo", "agg:token-mean", "adv:gae")]
    on_ray = run_audit(configs, version, jobs=2, ray=RayCluster(num_cpus=2))
    pooled = run_audit(configs, version, jobs=2)
    untimed = [[dataclasses.replace(r, seconds=0.0) for r in rows] for rows in (on_ray, pooled)]
    assert untimed[0] == untimed[1]
    assert [r.verdict for r in on_ray] == [r.verdict for r in pooled]
