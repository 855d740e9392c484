r"""The cause of an audit row: what makes a configuration biased or scaled, in one line.

The checker's verdict comes with a *symptom* (``E[g] is not 1.01 grad J on V=2, T=1, k=2``);
a reader wants the *cause* (``std normalisation of the rewards``).  :func:`row_cause` turns a
configuration's check result into both: ``cause`` one line naming what is wrong, ``detail``
the checker's own statement (kept for the JSON).

* **biased or scaled, with a diagnosis**: the causes that
  :func:`properties.sequence.diagnosis.diagnose` names, one short phrase each
  (:data:`CAUSE_PHRASES`), joined by ``"; "``.  The diagnosis is the result's own
  (``result.diagnosis``, when the check was run with ``diagnose=True``) or, with
  ``diagnose=True`` here, run on ``loss_fn`` with the check's keyword arguments: a sequence
  loss ``loss_fn(batch)``, or a trainer loss ``loss_fn(model, inputs)`` (``protocol="trainer"``,
  :mod:`properties.trainer.diagnosis`, with the check's ``micro_batches``, ``dp_size``,
  ``temperature``, ``advantages``; a row judged ``against="one-call"`` is not diagnosed, and
  its detail says why).  It re-runs the loss on a few thousand batches (several seconds for a
  loss that runs one batch at a time), so it is opt-in.  A loss that computes in float32 (TRL's
  fused LM head) is probed in float64 as every loss is: its round-off stays far below the
  probes' tolerance (``PROPORTIONAL_RTOL``), so it names no cause of its own, and when no other
  cause is found the diagnosis says ``low-precision`` (a strict ``biased`` verdict that is
  round-off then reads as its scale and ``float32 round-off, no cause above it``).
* **scaled, without a diagnosis**: the constant's closed form read as a cause
  (:data:`SCALE_DESCRIPTIONS`: ``c = k`` is a sum over the group's responses).
* **anything else** (unbiased, error, a result of another type, a diagnosis that failed or
  named nothing): the symptom itself, so a row never loses what the checker said.

A row that covered less than asked keeps its ``; not checked: ...`` in ``cause`` (no silent
pass).

>>> row_cause(None, "E[g] = grad J on all 5 problems").cause
'E[g] = grad J on all 5 problems'
>>> from types import SimpleNamespace as NS
>>> found = NS(findings=(NS(name="reward-normalisation", sentence="...", evidence={}),))
>>> row_cause(NS(verdict="biased", diagnosis=found), "E[g] is not 1.01 grad J").cause
"std normalisation of the group's rewards"
>>> row_cause(NS(verdict="scaled", diagnosis=None), "E[g] is a constant multiple",
...           constant="c = k").cause
"c = k: the group's responses are summed, not averaged"
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CAUSE_PHRASES: dict[str, str] = {
    "reward-normalisation": "std normalisation of the group's rewards",
    "reward-nonlinear": "the rewards enter nonlinearly (doubling them does not double E[g])",
    "reward-shift": "a statistic of the rewards that a shift changes (a count of nonzero rewards?)",
    "no-gradient": "no expected gradient at all (E[g] = 0)",
    "eos": "the EOS token gets no weight",
    "position": "a token's weight depends on its position (discounted or forward-summed returns)",
    "truncation": "truncated responses are weighted unlike EOS-ended ones",
    "response-dependent": "a baseline that depends on the response itself (its own reward or tokens)",
    "padding": "the padded positions after EOS get gradient or change E[g]",
    "pooling": "pooling the prompts' responses (a batch-wide statistic or token count)",
    "reads-logits": "the gradient comes through logits, not log_probs, and is biased",
    "off-policy": "off-policy, no full ratio pi(y)/pi_old(y)",
    "off-policy-no-ratio": "off-policy, no importance ratio at all",
    "off-policy-per-token": "off-policy, per-token ratios instead of the response's ratio pi(y)/pi_old(y)",
    "off-policy-clipped": "off-policy, the ratio is clipped or capped",
    "kl-zero": "KL k1 in the loss: zero-mean gradient (no KL gradient in expectation)",
    "kl-forward": "KL k3 in the loss: the per-node forward KL gradient, not grad KL(pi || pi_ref)",
    "kl-per-token": "KL k2 in the loss: the per-token KL gradient, the future terms missing",
    "kl-biased": "the KL part is biased: its E[g] is not -beta grad KL(pi || pi_ref)",
    "kl-scale": "the KL and reward parts are scaled differently (beta effectively changed)",
    "extra-term": "a term that does not come from the rewards (an entropy bonus?)",
    "low-precision": "float32 round-off, no cause above it",
    "scale-max-len": "divides by max_len (c ~ 1/T)",
    "scale-prompts": "sums over the prompts (c ~ P)",
    "scale-group": "sums over the group's responses (c ~ k)",
    "self-baseline": "the group-mean baseline includes the response's own reward (c ~ (k-1)/k)",
    "batch-self-baseline": "the batch-mean baseline includes the response's own reward "
    "(c ~ (Pk-1)/(Pk))",
    "scale-unexplained": "a constant that changes with (k, T, P) in no usual way",
}
"""One short phrase per :class:`~properties.sequence.results.Finding` name of the diagnosis
(a name not listed here is shown as itself with the first clause of its sentence)."""

LENGTH_PHRASES = (
    "length normalisation 1/|y| (a per-response token mean, as seq-mean-token-mean)",
    "length-dependent token weights (a mean over the batch's tokens?)",
)
"""The ``length`` finding: a weight proportional to ``1/|y|`` (its sentence says ``1/|y|``), or
another dependence on the length."""

SCALE_DESCRIPTIONS: dict[str, str] = {
    "(k-1)/k": "the group-mean baseline includes the response's own reward",
    "k/(k-1)": "a factor k/(k-1) on an unbiased estimate",
    "k": "the group's responses are summed, not averaged",
    "1/T": "divides by max_len (a constant), not by each response's length",
    "(k-1)/(kT)": "the group-mean baseline includes the response's own reward, and it divides "
    "by max_len",
    "1/(kT)": "divides by k max_len",
    "P": "the prompts are summed, not averaged",
    "kP/T": "all P k responses are summed and divided by max_len",
    "(k-1)P/T": "all P k responses are summed and divided by max_len, and the group-mean "
    "baseline includes the response's own reward",
}
"""What each closed form of :func:`properties.audit.formula.fit_formula` (``c = ...``) usually
means, for a scaled row without a diagnosis."""


DIAGNOSED_PROTOCOLS: dict[str, str] = {"sequence-loss": "sequence-loss", "trainer-loss": "trainer"}
"""The diagnosis's protocol for each checked protocol (a report's ``protocol``) it models."""


CAUSE_LIMIT = 240
"""Characters of a row's ``cause`` (longer is cut with ``...``; ``detail`` is never cut)."""


UNCHECKED_MARK = "; not checked: "
"""What starts the shapes a row left out (:func:`one_line` never cuts it away)."""


def one_line(text: str, limit: int = CAUSE_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters, keeping its ``; not checked: ...``
    tail whole (a cut must not hide that a row covered less than asked).

    >>> one_line("a   b", 10), one_line("x" * 12, 10)
    ('a b', 'xxxxxxx...')
    >>> one_line("y" * 30 + "; not checked: k=4, T=2, P=2", 50)
    'yyyyyyyyyyyyyyyyyyy...; not checked: k=4, T=2, P=2'
    """
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    head, mark, tail = line.partition(UNCHECKED_MARK)
    kept = mark + tail
    room = limit - len(kept) - 3
    if not mark or room < 12:
        return line[: limit - 3] + "..."
    return head[:room] + "..." + kept



@dataclass(frozen=True)
class RowCause:
    """``cause``: one line for the matrix; ``detail``: the checker's symptom, for the JSON;
    ``seconds``: the time the diagnosis took here (0 when none ran)."""

    cause: str
    detail: str
    seconds: float = 0.0


def finding_phrase(name: str, sentence: str = "") -> str:
    """The short phrase of one finding.

    >>> finding_phrase("length", "a token's expected weight is proportional to 1/|y|: ...")
    'length normalisation 1/|y| (a per-response token mean, as seq-mean-token-mean)'
    >>> finding_phrase("new-cause", "something odd: more words")
    'new-cause: something odd'
    """
    if name == "length":
        return LENGTH_PHRASES[0] if "1/|y|" in sentence else LENGTH_PHRASES[1]
    if name == "scale-constant":  # "E[g] = 0.5 x (the factors above) x grad J: ..."
        return "a constant factor: " + sentence.split(":")[0].replace(" x (the factors above)", "")
    if name in CAUSE_PHRASES:
        return CAUSE_PHRASES[name]
    first = sentence.split(":")[0].split(". ")[0].strip().rstrip(".")
    return f"{name}: {first}" if first else name


def diagnosis_cause(diagnosis: Any, omit: tuple[str, ...] = ()) -> str:
    """The findings of a diagnosis, but those named in ``omit``, as one line ('' when none).

    >>> from types import SimpleNamespace as NS
    >>> d = NS(findings=(NS(name="scale-group", sentence=""), NS(name="scale-max-len", sentence=""),
    ...                  NS(name="low-precision", sentence="")))
    >>> diagnosis_cause(d, omit=("low-precision",))
    "sums over the group's responses (c ~ k); divides by max_len (c ~ 1/T)"
    """
    findings = [f for f in getattr(diagnosis, "findings", None) or () if str(f.name) not in omit]
    phrases = [finding_phrase(str(f.name), str(getattr(f, "sentence", ""))) for f in findings]
    return "; ".join(dict.fromkeys(phrases))


def hard_coded_note(diagnosis: Any, axes: Mapping[str, str] | None) -> str:
    """`` although loss_agg_mode is M`` when the diagnosis finds a per-response token mean
    (``1/|y|``) but the configured aggregation ``M`` is no token mean ('' otherwise).

    >>> from types import SimpleNamespace as NS
    >>> d = NS(findings=(NS(name="length", sentence="proportional to 1/|y|: ..."),))
    >>> hard_coded_note(d, {"loss_agg_mode": "seq-mean-token-sum"})
    ', although loss_agg_mode is seq-mean-token-sum: the loss hard-codes its aggregation'
    >>> hard_coded_note(d, {"loss_agg_mode": "seq-mean-token-mean"})
    ''
    """
    mode = (axes or {}).get("loss_agg_mode", "")
    per_response = any(
        f.name == "length" and "1/|y|" in str(getattr(f, "sentence", ""))
        for f in getattr(diagnosis, "findings", None) or ()
    )
    if not per_response or not mode or "token-mean" in mode:
        return ""
    return f", although loss_agg_mode is {mode}: the loss hard-codes its aggregation"


def scale_description(constant: str) -> str:
    """``c = k`` read as a cause ('' for a constant with no closed form).

    >>> scale_description("c = 1/T")
    "c = 1/T: divides by max_len (a constant), not by each response's length"
    >>> scale_description("c = k at P=1")
    "c = k at P=1: the group's responses are summed, not averaged"
    >>> scale_description("c = 0.3 at k=2, T=1, P=1")
    ''
    """
    form, _, _held = constant.removeprefix("c = ").partition(" at ")  # "c = k at P=1"
    text = SCALE_DESCRIPTIONS.get(form.strip())
    return f"{constant.strip()}: {text}" if text else ""


def _run_diagnosis(
    result: Any, loss_fn: Callable[..., Any] | None, check_kwargs: Mapping[str, Any] | None
) -> tuple[Any, str]:
    """The diagnosis of ``loss_fn`` (or ``None``) and, when it could not run, why."""
    if loss_fn is None:
        return None, "no loss to diagnose"
    protocol = DIAGNOSED_PROTOCOLS.get(str(getattr(result, "protocol", None)))
    if (check_kwargs or {}).get("against", "objective") != "objective":
        return None, "not diagnosed: judged against one call, and the diagnosis names causes against grad J"
    if protocol is None:
        return None, f"the diagnosis does not model the {getattr(result, 'protocol', '?')!s} protocol"
    import properties.trainer.diagnosis  # noqa: F401 - registers protocol="trainer"
    from properties.sequence.diagnosis import diagnose

    try:
        given = dict(check_kwargs) if check_kwargs is not None else result
        return diagnose(loss_fn, given, protocol=protocol), ""
    except Exception as exc:  # hostile library code, or options the probes do not model
        return None, f"the diagnosis failed: {type(exc).__name__}: {exc}"


def _with_unchecked(text: str, unchecked: tuple[str, ...]) -> str:
    return f"{text}{UNCHECKED_MARK}{', '.join(unchecked)}" if unchecked else text


def row_cause(
    result: Any,
    symptom: str,
    *,
    constant: str = "",
    unchecked: tuple[str, ...] = (),
    loss_fn: Callable[..., Any] | None = None,
    check_kwargs: Mapping[str, Any] | None = None,
    diagnose: bool = False,
    axes: Mapping[str, str] | None = None,
) -> RowCause:
    """The cause and the detail of one row (see the module docstring); never raises.

    ``result`` is the check's result of any type (its ``verdict``, ``diagnosis`` and
    ``protocol`` are read when present); ``symptom`` the row's statement so far;
    ``constant`` a scaled row's ``c = ...``; ``unchecked`` the shapes left out; ``axes`` the
    configuration's axes: a per-response token mean under a ``loss_agg_mode`` that is no
    token mean is said to be the loss's own (:func:`hard_coded_note`).
    """
    verdict = getattr(result, "verdict", None)
    if verdict not in ("biased", "scaled"):
        return RowCause(symptom, symptom)
    start = time.perf_counter()
    diagnosis = getattr(result, "diagnosis", None)
    failed = ""
    if diagnosis is None and diagnose:
        diagnosis, failed = _run_diagnosis(result, loss_fn, check_kwargs)
    seconds = time.perf_counter() - start if diagnose else 0.0
    # a row judged at a declared precision (TRL: float32) needs no "round-off, no cause above
    # it": the probes' float64 residual is that precision's round-off, which the row states
    omit = ("low-precision",) if (check_kwargs or {}).get("precision") else ()
    named = diagnosis_cause(diagnosis, omit) if diagnosis is not None else ""
    skipped = list(getattr(diagnosis, "skipped", ()) or ())
    could_not = f"{len(skipped)} probes could not run: {skipped[0]}" if skipped else ""
    if diagnosis is not None and not named:
        failed = "the diagnosis named no cause" + (f" ({could_not})" if could_not else "")
    elif could_not:  # the causes those probes look for were not looked for
        failed = f"the diagnosis: {could_not}"
    detail = f"{symptom} [{failed}]" if failed else symptom
    if named:
        named += hard_coded_note(diagnosis, axes)
        return RowCause(one_line(_with_unchecked(named, unchecked)), detail, seconds)
    if verdict == "scaled":
        described = scale_description(constant)
        if described:
            return RowCause(one_line(_with_unchecked(described, unchecked)), detail, seconds)
    return RowCause(symptom, detail, seconds)


__all__ = [
    "CAUSE_LIMIT",
    "CAUSE_PHRASES",
    "DIAGNOSED_PROTOCOLS",
    "LENGTH_PHRASES",
    "SCALE_DESCRIPTIONS",
    "UNCHECKED_MARK",
    "RowCause",
    "diagnosis_cause",
    "finding_phrase",
    "hard_coded_note",
    "one_line",
    "row_cause",
    "scale_description",
]
