"""The HTML page of a library audit (``ida-verify audit LIBRARY --report DIR``).

One page, no figures: the library and its version, the settings and the totals, the matrix
grouped (one row per group of rows that agree, :mod:`properties.audit.groups`, listing its
configurations), then every configuration with its group, and the data beside it
(``audit.json``, the ``--json`` output).  Written atomically like the other reports
(:func:`properties.report.page.write_check_report`); needs no matplotlib.

The page's own script records on ``<html>`` what the browser test reads: the number of group
rows and configuration rows it rendered (``data-groups``, ``data-rows``) and the number of
script errors it saw (``data-errors``), besides the common ``data-verdicts-visible``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from properties.report.page import _publish, _version, check_out_dir

_STYLE = """<style>
.v-not-checked { background: #59636e; }
td.names { max-width: 360px; }
td.names code { white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; }
td.const { white-space: nowrap; }
</style>
"""

_COUNT_SCRIPT = """<script>
(function () {
  var root = document.documentElement, errors = 0;
  window.addEventListener("error", function () {
    errors += 1; root.setAttribute("data-errors", String(errors));
  });
  root.setAttribute("data-errors", "0");
  window.addEventListener("load", function () {
    root.setAttribute("data-groups",
      String(document.querySelectorAll("#verdicts tr.group").length));
    root.setAttribute("data-rows", String(document.querySelectorAll("#rows tr.config").length));
  });
})();
</script>
"""


def _badge(verdict: str) -> str:
    from properties.report.html import esc

    return f'<span class="badge v-{esc(verdict.replace(" ", "-"))}">{esc(verdict)}</span>'


def _seconds(value: Any) -> str:
    return f"{float(value):.1f} s" if value else "-"


def _settings_html(payload: dict[str, Any]) -> str:
    from properties.audit.core import AUDIT_SETTINGS
    from properties.report.html import esc, format_value

    rows = payload["rows"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    items = [
        ("library", f"{payload['library']} {payload['version']}"),
        ("configurations", f"{len(rows)} in {len(payload['groups'])} groups of rows that agree"),
        ("verdicts", ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))),
        ("run", f"{payload['runner']}, {payload['seconds']:.0f} s wall"),
        ("checker settings", ", ".join(f"{k}={format_value(v)}" for k, v in AUDIT_SETTINGS.items())
         + " (a configuration may add its own)"),
    ]
    items += [("judged at", p) for p in payload.get("precision", [])]  # a library's declared precision
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f'<table class="kv" id="settings">{body}</table>\n'


def _groups_html(payload: dict[str, Any]) -> str:
    from properties.report.html import esc

    seconds: dict[int, float] = {}
    for r in payload["rows"]:
        seconds[r["group"]] = seconds.get(r["group"], 0.0) + float(r["seconds"])
    head = "".join(f"<th>{h}</th>" for h in
                   ("group", "configurations", "verdict", "constant", "cause", "time"))
    cells = []
    for g in payload["groups"]:
        names = ", ".join(f"<code>{esc(n)}</code>" for n in g["configurations"])
        cells.append(
            f'<tr class="group" id="group-{g["group"]}" data-size="{len(g["configurations"])}">'
            f'<td class="num">{g["group"]}</td><td class="names">{names}</td>'
            f"<td>{_badge(g['verdict'])}</td><td class=\"const\">{esc(g['constant'])}</td>"
            f'<td>{esc(g["cause"])}</td><td class="num">{_seconds(seconds.get(g["group"]))}</td></tr>'
        )
    return f'<table id="verdicts"><tr>{head}</tr>{"".join(cells)}</table>\n'


def _rows_html(payload: dict[str, Any]) -> str:
    from properties.report.html import esc

    head = "".join(f"<th>{h}</th>" for h in
                   ("configuration", "group", "verdict", "constant", "cause", "time"))
    cells = [
        f'<tr class="config"><td><code>{esc(r["name"])}</code></td>'
        f'<td class="num"><a href="#group-{r["group"]}">{r["group"]}</a></td>'
        f"<td>{_badge(r['verdict'])}</td><td class=\"const\">{esc(r['constant'])}</td>"
        f"<td>{esc(r['cause'])}</td>"
        f'<td class="num">{_seconds(r["seconds"])}</td></tr>'
        for r in payload["rows"]
    ]
    return f'<table id="rows"><tr>{head}</tr>{"".join(cells)}</table>\n'


def write_audit_report(out_dir: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write the page of an audit into ``out_dir``: ``index.html``, ``audit.json`` (``payload``,
    the ``ida-verify audit --json`` output), ``manifest.json``; return the absolute path.

    ``out_dir`` must be new, empty or an earlier report (:func:`check_out_dir`).
    """
    from properties.report.html import esc, page, write_json

    check_out_dir(out_dir)
    title = f"ida-verify audit {payload['library']}"

    def build(tmp: Path) -> list[str]:
        write_json(tmp / "audit.json", payload)
        body = _STYLE + _COUNT_SCRIPT + _settings_html(payload)
        body += (
            "<h2>The matrix, grouped</h2>\n<p>Rows that agree (the same verdict, constant and "
            "cause) share one line; a configuration alone agrees with no other.</p>\n"
            + _groups_html(payload)
        )
        body += "<h2>Every configuration</h2>\n" + _rows_html(payload)
        body += (
            f"<footer>Built by <code>ida-verify audit {esc(payload['library'])} --report</code> "
            f'(ida-verify {esc(_version())}). Data: <a href="audit.json">audit.json</a>.</footer>'
        )
        subtitle = esc(f"{payload['library']} {payload['version']}: {len(payload['rows'])} "
                       f"configurations, {len(payload['groups'])} groups")
        (tmp / "index.html").write_text(page(title, subtitle, body), encoding="utf-8")
        return ["index.html", "audit.json"]

    return _publish(out_dir, build, "audit report")


__all__ = ["write_audit_report"]
