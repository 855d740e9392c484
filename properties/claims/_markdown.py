r"""``CLAIMS.md``, generated from the registry (``ida-verify claims --markdown``).

Everything claim-specific in the document comes from the code: the statement, assumptions,
parameterisation, tie handling, expected verdict and meaning of each claim from its
:class:`spec.Claim`; the modules from where the claim, its proof, its properties and the
:mod:`impl` functions they exercise are defined.  Only the framing (the source, the
setting, what the verdicts mean) is written here.  A test compares the committed file with
:func:`claims_markdown` byte for byte, so the two cannot drift.

>>> text = claims_markdown()
>>> text.startswith("# The claims"), "## `reinforce-unbiased`" in text
(True, True)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from fractions import Fraction
from types import ModuleType
from typing import Any

from properties.claims._common import ClaimSpec
from properties.claims._runner import FAMILIES as PROPERTY_FAMILIES

REGENERATE = "ida-verify claims --markdown > CLAIMS.md"
"""The command that rewrites ``CLAIMS.md`` from the registry (run from the repository root)."""

_INTRO = """\
ida-verify checks the argument of "Reinforcement Learning in the Iterated Amplification
Framework" (2019) and of its comment thread: that training a model M by reinforcement
learning on the approval of an amplified overseer M2 and training M to imitate M2 reach
the same place "given unlimited compute", and where that stops being true.  The argument
is cut into the fourteen claims below, each with an identifier, a precise statement, the
assumptions it is made under and the verdict we expect; `ida-verify claims` recomputes
every verdict from the code, and `ida-verify claims ID` checks one claim.
"""

_SETTING = """\
## Setting

* **Question and answers.** One question Y and a finite set of answers
  D = {0, ..., n-1}, n >= 2.
* **Overseer.** M2 scores every answer: s(x) = M2("How good is answer x to Y?"), a real
  number.  It is deterministic unless a claim says it is noisy (then it returns s(x) plus
  zero-mean noise).
* **Model.** A policy p over D.  Unless a claim says otherwise it is the tabular softmax
  p = softmax(theta), theta in R^n; "any differentiable parameterisation" means
  p = p(i, vartheta) for an arbitrary differentiable family.
* **RL objective.** J(theta) = E_{X~p}[s(X)] = sum_i p_i s_i.  For the softmax,
  dJ/dtheta_i = p_i (s_i - J).
* **Best answers and the tie rule.** A\\* is the set of maximisers of s (ties are allowed,
  and every claim says what they do).  Wherever one answer must be chosen, **the lowest
  index wins among equal scores**; X\\* is the lowest-index maximiser.
* **Unbounded search** ("unlimited compute"): M2 scores every answer and returns X\\*.
* **Limited search, best-of-k:** M2 draws k candidates iid from a proposal q and returns
  the best by score (tie rule as above).  Order the answers by score, ties by the tie rule,
  as x_(1) < ... < x_(n), and let F_j be the proposal mass of the j lowest; the output law
  is B_k(q)(x_(j)) = F_j^k - F_{j-1}^k, and its mass on the maximisers is
  B_k(q)(A\\*) = 1 - (1 - q(A\\*))^k.
* **RL update** (REINFORCE) over a group of k iid samples x_1..x_k ~ p with baselines b_j:
  g = (1/k) sum_j (s(x_j) - b_j) grad log p(x_j); with a single sample and no baseline,
  M2(x) grad log p(x).
* **Imitation** of a demonstrator whose answers follow q: maximise E_{X~q}[log p(X)].  For
  the softmax its gradient is q - p; imitating the unbounded-search overseer (always X\\*)
  gives e_{X\\*} - p.
"""

_VERDICTS = """\
## Verdicts

* **proved**: a SymPy derivation that holds for general n (and general k where a group or
  search size appears), every step checked (`ida-verify prove ID` prints it), and no
  numeric property finds a violation.
* **holds**: no symbolic proof; the numeric properties (exact where possible, trajectories,
  calibrated sampling tests) find no violation on generated problems.
* **refuted**: the suite finds a counterexample to the claimed equivalence, Hypothesis
  shrinks it, and it is confirmed exactly in rational arithmetic.  The claim stays in the
  ledger with its counterexample: knowing where the equivalence breaks is the point.
* **failed** (never expected): the checks disagree with the expected verdict;
  `ida-verify claims` then exits with status 1.
* **error** (never expected): a check is vacuous.  Every property carries a planted
  violation (a perturbed claimed value or a wrong candidate) that the ledger runs through
  the property's own code first; a property that misses it, has none, or runs no test,
  and a counterexample search or exact confirmation that accepts a case where the claim
  holds, make the claim's verdict `error` (exit status 1), never a pass.  A "proved"
  claim also needs a derivation for every size: a proof whose steps are all bounded is a
  finite check ("checked only for n <= N"), and the claim is then **failed**.
"""


def _path(module: str) -> str:
    """``spec.claims.rl`` -> ``spec/claims/rl.py`` (a path in this repository)."""
    return module.replace(".", "/") + ".py"


def _md(text: str) -> str:
    r"""Escape the characters Markdown would read as markup in our prose (``*``, ``|``)."""
    return text.replace("*", r"\*").replace("|", r"\|")


def _value(value: Any) -> str:
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return str(value)


def _call(fn: Callable[..., Any]) -> str:
    """``name(arg=value, ...)`` for a ``functools.partial`` (the documented counterexample)."""
    func = getattr(fn, "func", fn)
    args = getattr(fn, "args", ())
    names = list(inspect.signature(func).parameters)
    shown = ", ".join(f"{name}={_value(v)}" for name, v in zip(names, args, strict=False))
    return f"`{func.__name__}({shown})`"


def _family_blurb(module: ModuleType) -> str:
    """``"The search family: an overseer that ..."`` -> ``"an overseer that ..."``."""
    first = (inspect.getdoc(module) or "").splitlines()[0].rstrip(".")
    return first.split(": ", 1)[1] if ": " in first else first


def _implementation(fns: Iterable[Callable[..., Any]]) -> str:
    by_module: dict[str, list[str]] = {}
    for fn in fns:
        by_module.setdefault(fn.__module__, []).append(f"`{fn.__name__}`")
    return "; ".join(f"`{_path(m)}`: {', '.join(names)}" for m, names in by_module.items())


def _families_list(spec_families: dict[str, ModuleType], checked_in: dict[str, str]) -> str:
    import spec

    lines = [
        "## Where each claim lives",
        "",
        "Each claim belongs to one family; a family has one module for its statements and",
        "proofs and one for its properties, and `spec.claims.FAMILIES` maps every claim id to",
        "its family.",
        "",
    ]
    for name, module in spec_families.items():
        ids = [cid for cid, fam in spec.claims.FAMILIES.items() if fam == name]
        lines.append(
            f"* **{name}**, {_md(_family_blurb(module))}: statements and proofs in "
            f"`{_path(module.__name__)}`, properties in `{_path(checked_in[ids[0]])}`; "
            + ", ".join(f"`{cid}`" for cid in ids)
            + "."
        )
    return "\n".join(lines) + "\n"


def _summary_table() -> str:
    import spec

    lines = ["## The claims", "", "| id | statement | expected |", "|---|---|---|"]
    for claim in spec.CLAIMS.values():
        lines.append(f"| [`{claim.id}`](#{claim.id}) | {_md(claim.text)} | {claim.expected} |")
    return "\n".join(lines) + "\n"


def _claim_section(claim: Any, check: ClaimSpec, checked_in: str) -> str:
    lines = [f"## `{claim.id}`", "", f"**Statement.** {_md(claim.text)}", ""]
    lines.append(f"**Expected verdict.** {claim.expected}")
    lines.append("")
    lines.append(f"**What it says about the argument.** {_md(claim.meaning)}")
    lines.append("")
    lines.append(f"**Parameterisation.** {_md(claim.parameterisation)}")
    lines.append("")
    lines.append(f"**Ties.** {_md(claim.ties)}")
    lines.append("")
    lines.append("**Assumptions.**")
    lines.append("")
    lines += [f"* {_md(a)}" for a in claim.assumptions]
    lines.append("")
    lines.append("**Where it lives.**")
    lines.append("")
    spec_path = _path(claim.prover.__module__ if claim.prover else _claim_module(claim.id))
    if claim.prover is not None:
        lines.append(
            f"* statement and proof: `{spec_path}`, `{claim.prover.__name__}` "
            f"(`ida-verify prove {claim.id}` prints it)"
        )
    elif claim.expected == "refuted":
        lines.append(f"* statement: `{spec_path}` (no proof: the ledger refutes it)")
    else:
        lines.append(f"* statement: `{spec_path}` (no symbolic proof: the properties check it)")
    if claim.counterexample is not None:
        func = getattr(claim.counterexample, "func", claim.counterexample)
        lines.append(
            f"* exact counterexample: `{_path(func.__module__)}`, {_call(claim.counterexample)}"
        )
    lines.append(f"* properties: `{_path(checked_in)}`")
    for prop in check.properties:
        lines.append(f"  * Hypothesis search: {_md(prop.name)}")
    for sp in check.statistical:
        lines.append(f"  * calibrated sampling test: {_md(sp.name)}")
    if check.counterexample is not None:
        lines.append(f"  * counterexample search: {_md(check.counterexample.name)}")
    lines.append(f"* implementation: {_implementation(check.implementation)}")
    lines.append(f"* check it: `ida-verify claims {claim.id}`")
    return "\n".join(lines) + "\n"


def _claim_module(claim_id: str) -> str:
    import spec

    return f"spec.claims.{spec.claims.FAMILIES[claim_id]}"


def claims_markdown() -> str:
    """The text of ``CLAIMS.md``, built from :mod:`spec` and :mod:`properties.claims`.

    Rewrite the file with ``ida-verify claims --markdown > CLAIMS.md``.
    """
    import importlib

    import spec

    checks: dict[str, ClaimSpec] = {c.id: c for m in PROPERTY_FAMILIES for c in m.CHECKS}
    checked_in = {c.id: m.__name__ for m in PROPERTY_FAMILIES for c in m.CHECKS}
    spec_families = {
        name: importlib.import_module(f"spec.claims.{name}")
        for name in dict.fromkeys(spec.claims.FAMILIES.values())
    }
    parts = [
        "# The claims ida-verify checks\n",
        "<!-- Generated from the registry (spec/claims/ and properties/claims/): do not edit by\n"
        f"     hand.  Edit the registry and regenerate with `{REGENERATE}`;\n"
        "     tests/test_claims_doc.py fails while this file and the registry differ. -->\n",
        _INTRO,
        _SETTING,
        _VERDICTS,
        _families_list(spec_families, checked_in),
        _summary_table(),
    ]
    for claim in spec.CLAIMS.values():
        parts.append(_claim_section(claim, checks[claim.id], checked_in[claim.id]))
    return "\n".join(parts)


__all__ = ["REGENERATE", "claims_markdown"]
