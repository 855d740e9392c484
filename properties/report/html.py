"""The HTML and JSON of the reports (private; :mod:`properties.report.page` is the public side).

One self-contained page: inline CSS, relative links to the PNGs beside it, no network.
A small inline script runs on ``load``: it counts the images that really loaded
(``naturalWidth > 0``), shows a visible warning naming any that did not (a page copied
without its PNGs), and records ``data-images-loaded``/``data-images-total`` and whether
the verdict table is on screen (``data-verdicts-visible``) on ``<html>``, which is what
the browser test reads.

>>> esc('<b>"x"</b>')
'&lt;b&gt;&quot;x&quot;&lt;/b&gt;'
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- JSON and HTML


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(jsonable(value), indent=2) + "\n", encoding="utf-8")


_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial,
       sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1120px; margin: 0 auto; padding: 20px 24px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
.sub { color: var(--muted); margin: 0 0 14px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
td.id code { font-weight: 600; }
.statement { color: var(--muted); font-size: 13px; }
.badge { display: inline-block; min-width: 72px; text-align: center; padding: 1px 8px;
         border-radius: 10px; color: #fff; font-weight: 600; font-size: 13px; }
.v-proved, .v-unbiased { background: #1a7f37; }
.v-holds { background: #0969da; }
.v-refuted, .v-scaled { background: #bc4c00; }
.v-failed, .v-biased { background: #cf222e; }
.v-error { background: #8250df; }
tr.unexpected td { background: #ffebe9; }
.summary { margin: 8px 0 0; font-weight: 600; }
details { margin-top: 4px; font-size: 13px; }
details ul { margin: 4px 0; padding-left: 18px; }
table.kv { width: auto; margin: 4px 0 10px; }
table.kv th { font-weight: 600; white-space: nowrap; }
pre { background: var(--soft); border: 1px solid var(--line); padding: 10px; overflow-x: auto;
      font-size: 12.5px; line-height: 1.4; }
pre.wrap { white-space: pre-wrap; overflow-wrap: anywhere; }
figure { margin: 18px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); display: block; }
figcaption { margin-top: 6px; font-size: 14px; }
figcaption b { display: block; margin-bottom: 2px; }
#missing { display: none; background: #ffebe9; border: 1px solid #cf222e; padding: 8px 12px;
           margin: 0 0 12px; font-weight: 600; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var root = document.documentElement;
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  root.setAttribute("data-images-total", String(imgs.length));
  root.setAttribute("data-images-loaded", String(imgs.length - broken.length));
  if (broken.length) {
    var box = document.getElementById("missing");
    box.textContent = broken.length + " of " + imgs.length + " figures did not load (" +
      broken.map(function (im) { return im.getAttribute("src"); }).join(", ") +
      "): keep the PNG files beside index.html.";
    box.style.display = "block";
  }
  var table = document.getElementById("verdicts");
  if (table) {
    var r = table.getBoundingClientRect(), st = window.getComputedStyle(table);
    var shown = r.width > 0 && r.height > 0 && r.top < window.innerHeight &&
      st.visibility !== "hidden" && st.display !== "none";
    root.setAttribute("data-verdicts-visible", shown ? "yes" : "no");
  }
  root.setAttribute("data-checked", "yes");
});
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, subtitle: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{esc(title)}</h1>\n<p class="sub">{subtitle}</p>\n'
        '<div id="missing" role="alert"></div>\n'
        f"{body}\n</main>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def figure_html(name: str, title: str, caption: str) -> str:
    return (
        f'<figure id="fig-{esc(name)}">\n<img src="{esc(name)}.png" alt="{esc(title)}">\n'
        f"<figcaption><b>{esc(title)}</b>{esc(caption)}</figcaption>\n</figure>\n"
    )


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def evidence_summary(ev: dict[str, Any]) -> tuple[str, list[str]]:
    """A one-line summary and the detail lines of one claim's evidence (JSON form)."""
    parts: list[str] = []
    details: list[str] = []
    proof = ev.get("proof")
    if isinstance(proof, dict):
        bounds = proof.get("bounds") or []
        scope = (
            "general n"
            if proof.get("scope") == "general"
            else "bounded: " + "; ".join(map(str, bounds))
        )
        if proof.get("ok") and proof.get("scope") != "general":
            # a bounded-only proof is a finite check, not a proof (issue 15)
            parts.append(
                f"SymPy: checked only for {'; '.join(map(str, bounds))} "
                f"({proof.get('steps', '?')} steps; not a proof for every size)"
            )
        else:
            parts.append(
                f"SymPy proof {'checks' if proof.get('ok') else 'FAILED'} "
                f"({proof.get('steps', '?')} steps, {scope})"
            )
    props = ev.get("properties") or []
    if props:
        examples = sum(int(p.get("examples", 0)) for p in props)
        violated = [p.get("name", "?") for p in props if p.get("violated")]
        parts.append(
            f"{len(props)} {'property' if len(props) == 1 else 'properties'}, "
            f"{examples} examples" + (f", {len(violated)} violated" if violated else "")
        )
        for p in props:
            details.append(
                f"property: {p.get('name', '?')} ({p.get('examples', '?')} examples"
                f"{', VIOLATED' if p.get('violated') else ''})"
            )
    for st in ev.get("statistical") or []:
        parts.append(
            f"{st.get('tests', '?')} calibrated tests, {st.get('rejections', '?')} "
            f"rejections (family α {st.get('family_alpha', '?')})"
        )
        details.append(
            f"statistical: {st.get('name', '?')}: {st.get('detail', '')}; power "
            f"{st.get('power', '?')}"
        )
    planted = ev.get("planted") or []
    if planted:
        missed = [row for row in planted if not row.get("caught")]
        parts.append(
            f"{len(planted) - len(missed)}/{len(planted)} planted violations caught"
            + (" (VACUOUS)" if missed else "")
        )
        for row in missed:
            details.append(f"vacuous: {row.get('property', '?')}: {row.get('problem', '')}")
    search = ev.get("counterexample_search")
    if isinstance(search, dict):
        parts.append(f"counterexample search, {search.get('examples', '?')} examples")
        details.append(f"counterexample search: {search.get('name', '?')}")
    exact = ev.get("exact_confirmation")
    if isinstance(exact, dict):
        parts.append("confirmed exactly" if exact.get("refutes") else "NOT confirmed exactly")
        if exact.get("report"):
            details.append(f"exact confirmation ({exact.get('kind', '')}): {exact['report']}")
    if "seconds" in ev:
        parts.append(f"{float(ev['seconds']):.2f} s")
    return "; ".join(parts), details


def ledger_html(claims: list[dict[str, Any]], seconds: float, config: dict[str, Any]) -> str:
    rows = []
    for c in claims:
        summary, details = evidence_summary(c.get("evidence") or {})
        unexpected = c["verdict"] != c["expected"]
        detail_html = (
            "<details><summary>details</summary><ul>"
            + "".join(f"<li>{esc(line)}</li>" for line in details)
            + "</ul></details>"
            if details
            else ""
        )
        row_class = ' class="unexpected"' if unexpected else ""
        rows.append(
            f"<tr{row_class}>"
            f'<td class="id"><code>{esc(c["id"])}</code><div class="statement">'
            f"{esc(c['statement'])}</div></td>"
            f'<td><span class="badge v-{esc(c["verdict"])}">{esc(c["verdict"])}</span></td>'
            f"<td>{esc(c['expected'])}{' (differs!)' if unexpected else ''}</td>"
            f"<td>{esc(summary)}{detail_html}</td></tr>"
        )
    ok = sum(c["verdict"] == c["expected"] for c in claims)
    table = (
        '<table id="verdicts">\n<thead><tr><th>claim</th><th>verdict</th><th>expected</th>'
        "<th>evidence</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
        f'<p class="summary">{ok}/{len(claims)} claims have their expected verdict '
        f"({seconds:.1f} s, {config['max_examples']} Hypothesis examples per property, "
        f"seed {config['seed']}).</p>\n"
    )
    cex = []
    for c in claims:
        if c.get("counterexample") is None:
            continue
        items = c["counterexample"].items() if isinstance(c["counterexample"], dict) else []
        kv = "".join(f"<tr><th>{esc(k)}</th><td>{esc(format_value(v))}</td></tr>" for k, v in items)
        exact = (c.get("evidence") or {}).get("exact_confirmation")
        exact_html = (
            f'<pre class="wrap">{esc(exact["report"])}</pre>'
            if isinstance(exact, dict) and exact.get("report")
            else ""
        )
        cex.append(
            f'<h3><code>{esc(c["id"])}</code> <span class="badge v-{esc(c["verdict"])}">'
            f'{esc(c["verdict"])}</span></h3>\n<table class="kv">{kv}</table>\n{exact_html}'
        )
    if cex:
        table += (
            "<h2>Counterexamples (shrunk by Hypothesis, confirmed in exact rationals)</h2>\n"
            + "\n".join(cex)
        )
    return table
