"""``ida-verify audit``: rows that agree grouped (table, JSON, ``--no-group``) and the HTML page
of the matrix (``--report DIR``), opened in headless Chromium.

The configurations are the package's own catalogue losses (``ida-verify audit catalogue``),
fast and with settled verdicts, so that these tests need torch but not verl.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from properties.audit.core import AuditRow
from properties.audit.groups import group_numbers, group_rows
from properties.cli import main

GROUPED = ["token-mean", "grpo-std", "token-mean-multi-prompt", "grpo-original", "seq-mean-token-mean"]
"""Five catalogue losses, all biased: two pairs that find the same counterexample, one alone."""


def _only(names: list[str]) -> list[str]:
    return [arg for name in names for arg in ("--only", name)]


def _expected(name: str) -> str:
    from impl.sequence_catalogue import get

    return get(name).expected


@pytest.fixture(scope="module")
def payload() -> dict[str, Any]:
    pytest.importorskip("torch")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["audit", "catalogue", "--jobs", "1", "--json", *_only(GROUPED)]) == 0
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


def test_grouping_is_by_verdict_constant_and_cause() -> None:
    def row(name: str, verdict: str, constant: str, cause: str) -> AuditRow:
        return AuditRow("x", "1", name, (), verdict, constant, cause, 1.5)

    rows = [
        row("a", "scaled", "c = k", "C"), row("b", "scaled", "c = 1/T", "C"),
        row("c", "scaled", "c = k", "C"), row("d", "scaled", "c = k", "D"),
        row("e", "biased", "c = k", "C"),
    ]
    groups = group_rows(rows)
    assert [g.names for g in groups] == [("a", "c"), ("b",), ("d",), ("e",)]
    assert group_numbers(rows) == [1, 2, 1, 3, 4]
    assert groups[0].seconds == 3.0


def test_json_keeps_one_object_per_configuration_with_its_group(payload: dict[str, Any]) -> None:
    rows = payload["rows"]
    from properties.audit.catalogue import configurations

    assert [r["name"] for r in rows] == [c.name for c in configurations() if c.name in GROUPED]
    assert all(r["verdict"] == _expected(r["name"]) for r in rows)
    for g in payload["groups"]:
        members = [r for r in rows if r["group"] == g["group"]]
        assert [r["name"] for r in members] == g["configurations"]
        assert {(r["verdict"], r["constant"], r["cause"]) for r in members} == {
            (g["verdict"], g["constant"], g["cause"])
        }
    causes = {r["name"]: r["cause"] for r in rows}
    assert len(payload["groups"]) == len(set(causes.values())) == 3  # two pairs and one alone


def test_a_library_without_a_declared_precision_is_judged_strictly(payload: dict[str, Any]) -> None:
    """Only a library module with ``PRECISION`` (TRL's) is judged at a coarser dtype; the catalogue
    and verl stay strict float64: no tolerance given, none shown."""
    from properties.audit import catalogue, verl

    assert getattr(catalogue, "PRECISION", None) is None and getattr(verl, "PRECISION", None) is None
    assert payload["precision"] == []
    for row in payload["rows"]:
        assert row["precision"] == "" and row["report"]["settings"]["rtol"] is None, row["name"]
        assert not row["cause"].startswith("at float32 precision")


def test_a_declared_precision_not_seen_in_the_loss_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A library declaring float32 whose loss computes in float64 only: judged at the declared
    tolerance (named in the row) and the cause says the dtype was not seen."""
    pytest.importorskip("torch")
    from properties.audit import catalogue
    from properties.audit.core import run_configuration

    monkeypatch.setattr(catalogue, "PRECISION", ("float32", "declared by this test"), raising=False)
    config = next(c for c in catalogue.configurations() if c.name == GROUPED[0])
    row = run_configuration(config, "v")
    assert row.precision.startswith("float32: rtol ") and row.precision.endswith("(declared by this test)")
    assert row.cause.startswith("at float32 precision (float32 was declared but not seen in the loss): ")
    assert row.report is not None and row.report["settings"]["rtol"] > 0


def test_the_table_groups_rows_and_no_group_prints_one_per_configuration(
    payload: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "catalogue", "--jobs", "1", *_only(GROUPED)]) == 0
    lines = capsys.readouterr().out.splitlines()
    version = payload["version"]
    assert lines[0].startswith(f"catalogue {version}: 5 configurations in 3 groups")
    for g in payload["groups"]:
        assert f"{g['group']}. {', '.join(g['configurations'])}" in lines
    assert len(lines) == 1 + 2 * len(payload["groups"]) + 1
    assert main(["audit", "catalogue", "--jobs", "1", "--no-group", *_only(GROUPED)]) == 0
    flat = capsys.readouterr().out.splitlines()
    assert flat[0] == f"catalogue {version}: 5 configurations"
    assert [line.split()[0] for line in flat[2:-1]] == [r["name"] for r in payload["rows"]]
    assert flat[-1].startswith("5 biased; ") and flat[-1].endswith("wall with --jobs 1")


def test_report_needs_a_directory_it_may_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert main(["audit", "catalogue", "--report", str(occupied), "--only", "token-mean"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--report" in err and "refusing to replace" in err
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]


# --------------------------------------------------------------------------- in a real browser


def _browse(page: Path, tmp_path: Path) -> tuple[str, str]:
    """Open ``page`` in headless Chromium: the DOM after the load event, and the console log."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium), so the page "
                    "is not opened in a browser here")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1600",
            "--enable-logging=stderr", "--v=0", "--dump-dom", page.absolute().as_uri()]
    result = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def _root(dom: str) -> dict[str, str]:
    match = re.search(r"<html([^>]*)>", dom)
    assert match, dom[:500]
    return dict(re.findall(r'(data-[\w-]+)="([^"]*)"', match.group(1)))


def test_the_report_renders_in_chromium_with_every_row_and_group(
    payload: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "audit"
    assert main(["audit", "catalogue", "--jobs", "1", "--report", str(out), *_only(GROUPED)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out / 'index.html'}"
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "index.html", "manifest.json"]
    data = json.loads((out / "audit.json").read_text())
    assert [(r["name"], r["verdict"], r["cause"], r["group"]) for r in data["rows"]] == [
        (r["name"], r["verdict"], r["cause"], r["group"]) for r in payload["rows"]
    ]
    dom, log = _browse(out / "index.html", tmp_path)
    attrs = _root(dom)
    assert attrs.get("data-checked") == "yes", "the page's load script did not run"
    assert attrs["data-errors"] == "0" and ":CONSOLE" not in log, log[-2000:]
    assert attrs["data-groups"] == str(len(data["groups"])) == "3"
    assert attrs["data-rows"] == str(len(data["rows"])) == "5"
    assert attrs["data-verdicts-visible"] == "yes"
    assert f"catalogue {data['version']}" in dom and "max_examples=5" in dom
    for g in data["groups"]:
        row = re.search(rf'<tr class="group" id="group-{g["group"]}"[^>]*>(.*?)</tr>', dom, re.S)
        assert row is not None and all(f"<code>{n}</code>" in row.group(1) for n in g["configurations"])


def test_chromium_catches_a_script_error_on_the_page(tmp_path: Path) -> None:
    """The check above can fail: a page whose script throws is seen as such."""
    from properties.report.audit_page import write_audit_report

    data = {"library": "x", "version": "1", "jobs": 1, "runner": "with --jobs 1", "seconds": 0.0,
            "rows": [{"name": "a", "verdict": "biased", "constant": "", "cause": "C",
                      "seconds": 0.1, "group": 1}],
            "groups": [{"group": 1, "verdict": "biased", "constant": "", "cause": "C",
                        "configurations": ["a"]}]}
    out = write_audit_report(tmp_path / "page", data)
    broken = out / "index.html"
    broken.write_text(broken.read_text().replace("</main>", "<script>noSuchFunction();</script></main>"))
    dom, log = _browse(broken, tmp_path)
    attrs = _root(dom)
    assert attrs["data-errors"] == "1" and ":CONSOLE" in log
    assert attrs["data-groups"] == attrs["data-rows"] == "1"
