"""What a sequence check returns: the report, its counterexample (with the weight table), error and run.

The classes extend the one-step checker's (:mod:`properties.onestep.results`).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from impl.types import FloatArray
from properties.onestep.results import (
    Counterexample,
    EstimatorError,
    EstimatorReport,
)
from properties.sequence.problems import (
    Cell,
    Shape,
)


def key_text(key: Hashable) -> str:
    """``k=2, T=3, P=1, V=3`` for a sequence key ``(k, T, P, V)`` (or ``(k, T, P)``).

    >>> key_text((2, 3, 1, 3)), key_text((2, 3, 1))
    ('k=2, T=3, P=1, V=3', 'k=2, T=3, P=1')
    """
    if isinstance(key, tuple) and len(key) in (3, 4):
        return ", ".join(f"{n}={v}" for n, v in zip("kTPV", key, strict=False))
    return str(key)


@dataclass(frozen=True)
class WeightRow:
    """One response of a counterexample: what its tokens receive in expectation.

    ``weights`` are :math:`\\omega(y, t) = \\sum_j E[w_{jt} \\mid y_j = y]` on its tokens;
    ``reinforce`` is the per-token weight of the exact gradient's own form,
    :math:`(\\pi/\\pi_{\\mathrm{old}})(y)\\,A(y)/P` with
    :math:`A = R - \\beta(\\log\\pi - \\log\\pi_{\\mathrm{ref}})` (the target is the mean over
    the ``P`` prompts), times the measured multiple.
    """

    prompt: int
    response: str
    length: int
    probability: float
    reward: float
    weights: tuple[float, ...]
    reinforce: float
    current: float | None = None
    """Off-policy: the response's probability under the current policy ``pi`` (``probability``
    is then the behaviour policy's, ``pi_old``, which sampled it); ``None`` on-policy."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``current`` only off-policy)."""
        out: dict[str, Any] = {
            "prompt": self.prompt,
            "response": self.response,
            "length": self.length,
            "probability": self.probability,
            "reward": self.reward,
            "weights": list(self.weights),
            "reinforce": self.reinforce,
        }
        if self.current is not None:
            out["current"] = self.current
        return out


_NO_SHAPE = Shape(2, 1, 1, 1)


@dataclass(frozen=True)
class SequenceCounterexample(Counterexample):
    """A sequence problem on which :math:`E[g]` is not the key's multiple of :math:`\\nabla J`.

    The inherited fields hold the flattened arrays (``logits`` is ``theta.ravel()``,
    ``scores`` the reward table, ``k`` the group size); ``shape`` and the policies give the
    problem itself, ``coordinates`` names each entry of ``theta`` as ``(prompt, node
    prefix, token)``, ``responses`` lists the responses as token strings, and
    ``length_pair`` shows the responses whose weights depart most from REINFORCE's form (one
    of another length for contrast, and a truncated one that shares the misfit) with the
    expected weight their tokens receive (when the loss's weights are available).
    """

    shape: Shape = _NO_SHAPE
    theta: FloatArray = field(default_factory=lambda: np.zeros(0))
    rewards: FloatArray = field(default_factory=lambda: np.zeros(0))
    ref_theta: FloatArray = field(default_factory=lambda: np.zeros(0))
    old_theta: FloatArray | None = None
    kl_coef: float = 0.0
    sampler_theta: FloatArray | None = None
    value_table: FloatArray | None = None
    reference_label: str = ""
    kind: str = ""
    coordinates: tuple[tuple[int, str, str], ...] = ()
    responses: tuple[str, ...] = ()
    length_pair: tuple[WeightRow, ...] = ()
    weights_complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields: the one-step fields that hold for a sequence, plus the problem.

        The one-step ``logits``/``scores``/``n``/``reference_logits``/``reference_scores``
        are left out (they would hold the flattened ``theta``, the reward table and its
        width): ``theta``/``rewards`` hold the problem, ``reference_theta_flat``/
        ``reference_rewards_flat`` the reference problem's, flattened in the order of
        ``expectation``/``gradient``/``residual``/``discrepancy``/``tolerance``.
        """
        out = super().to_dict()
        for one_step in ("logits", "scores", "n", "reference_logits", "reference_scores"):
            del out[one_step]
        out.update(
            {
                "reference_theta_flat": self.reference_logits.tolist(),
                "reference_rewards_flat": self.reference_scores.tolist(),
            }
        )
        out.update(
            {
                "shape": {
                    "vocab_size": self.shape.vocab_size,
                    "max_len": self.shape.max_len,
                    "group_size": self.shape.k,
                    "num_prompts": self.shape.num_prompts,
                    **({"tool_tokens": True} if self.shape.tool_tokens else {}),
                    **({"values": self.shape.values} if self.shape.values else {}),
                },
                "theta": self.theta.tolist(),
                "rewards": self.rewards.tolist(),
                "ref_theta": self.ref_theta.tolist(),
                "old_theta": None if self.old_theta is None else self.old_theta.tolist(),
                "kl_coef": self.kl_coef,
                **({} if self.sampler_theta is None else {"sampler_theta": self.sampler_theta.tolist()}),
                **({} if self.value_table is None else {"value_table": self.value_table.tolist()}),
                "reference_label": self.reference_label,
                "kind": self.kind,
                "responses": list(self.responses),
                "length_pair": [row.to_dict() for row in self.length_pair],
                "weights_complete": self.weights_complete,
            }
        )
        return out


@dataclass(frozen=True)
class SequenceError(EstimatorError):
    """What went wrong, on which batch: the inherited fields plus the batch as token strings.

    ``samples`` holds the batch's response indices and ``rewards`` its rewards (both empty
    when the failure is not tied to one batch); ``batch`` lists ``(prompt, response text,
    reward)`` per row; ``shape`` and ``problem_label`` locate the problem.
    """

    shape: Shape | None = None
    problem_label: str = ""
    batch: tuple[tuple[int, str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields, named for a sequence problem.

        The one-step ``logits``/``samples``/``rewards``/``scores`` are renamed for what
        they hold: ``theta_flat`` (the problem's ``theta``, flattened), ``reward_table_flat``
        (its reward table, flattened), ``batch_responses`` (the response index of each row
        of the batch) and ``batch_rewards`` (their rewards); all empty when the failure is
        not tied to a problem (or a batch).
        """
        out = super().to_dict()
        scores = out.pop("scores")
        out.update(
            {
                "theta_flat": out.pop("logits"),
                "reward_table_flat": [] if scores is None else scores,
                "batch_responses": out.pop("samples"),
                "batch_rewards": out.pop("rewards"),
            }
        )
        out.update(
            {
                "shape": None
                if self.shape is None
                else {
                    "vocab_size": self.shape.vocab_size,
                    "max_len": self.shape.max_len,
                    "group_size": self.shape.k,
                    "num_prompts": self.shape.num_prompts,
                },
                "problem": self.problem_label,
                "batch": [list(row) for row in self.batch],
            }
        )
        return out


@dataclass(frozen=True)
class SequenceRun:
    """How the check ran: the evaluation mode, the shapes and batches, the costs.

    ``mode`` is ``vmap``/``loop`` (PyTorch) or ``batched``/``per-batch`` (weights): the
    path whose results were judged; ``fallback_reason`` says why ``vmap`` was not used;
    ``shapes`` exactly the ``(V, T, k, P)`` evaluated, with their response and batch counts;
    ``unchecked`` the requested ``(k, T, P)`` with no shape within the budget at any ``V``
    (the check is then *partial*); ``over_budget`` the requested shapes over the budget and
    ``not_reached`` those within it that the check did not reach (it stopped at a
    counterexample or an error), both as :func:`properties.sequence.region.describe_shapes`
    text (empty: none); ``blind_spots`` what the evaluated shapes cannot show; ``ranges`` the
    logits, token log-probs and rewards the problems held; ``probe_seconds`` one plain call
    of the loss on one batch; ``dtypes`` the floating dtypes the loss computed in;
    ``multiset`` the shapes summed over multisets of each group's responses
    (:mod:`properties.sequence.multisets`; the rest over ordered batches), and
    ``route_fallback`` why none was (the loss is not symmetric within a group), both text
    (empty: none).
    """

    protocol: str
    mode: str
    fallback_reason: str | None
    shapes: tuple[tuple[str, int, int], ...]
    unchecked: tuple[Cell, ...]
    batch_budget: int
    batches_evaluated: int
    probe_seconds: float | None
    dtypes: tuple[str, ...]
    problems: dict[str, int]
    over_budget: str = ""
    not_reached: str = ""
    blind_spots: tuple[str, ...] = ()
    ranges: dict[str, float | None] = field(default_factory=dict)
    multiset: str = ""
    route_fallback: str = ""

    @property
    def partial(self) -> bool:
        """Whether a requested ``(k, T, P)`` was not checked at any ``V``."""
        return bool(self.unchecked)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "protocol": self.protocol,
            "mode": self.mode,
            "fallback_reason": self.fallback_reason,
            "shapes": [{"shape": s, "responses": r, "batches": g} for s, r, g in self.shapes],
            "unchecked": [key_text(k) for k in self.unchecked],
            "batch_budget": self.batch_budget,
            "batches_evaluated": self.batches_evaluated,
            "probe_seconds": self.probe_seconds,
            "dtypes": list(self.dtypes),
            "problems": dict(self.problems),
            "partial": self.partial,
            "over_budget": self.over_budget,
            "not_reached": self.not_reached,
            "blind_spots": list(self.blind_spots),
            "ranges": dict(self.ranges),
            **({"multiset_shapes": self.multiset} if self.multiset else {}),
            **({"route_fallback": self.route_fallback} if self.route_fallback else {}),
        }


@dataclass(frozen=True)
class Finding:
    """One cause: a short ``name``, a ``sentence`` for the user, and the numbers behind it."""

    name: str
    sentence: str
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {"name": self.name, "sentence": self.sentence, "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class Diagnosis:
    """Every cause found (``findings``), the probes run (``probes``) and those that could not
    run (``skipped``: their causes were not looked for), and the time taken."""

    findings: tuple[Finding, ...]
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0
    probes: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """The findings' names, in order."""
        return tuple(f.name for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "skipped": list(self.skipped),
            "seconds": self.seconds,
            "probes": list(self.probes),
        }

    def describe(self) -> str:
        """One line per finding (``"no cause found"`` when there is none).

        >>> Diagnosis((Finding("length", "weights depend on length."),)).describe()
        '- length: weights depend on length.'
        """
        if not self.findings:
            return "no cause found"
        return "\n".join(f"- {f.name}: {f.sentence}" for f in self.findings)



@dataclass(frozen=True)
class SequenceReport(EstimatorReport):
    """An :class:`EstimatorReport` for a sequence check (same verdicts, ``assert_*``, JSON).

    ``scale``/``scale_uncertainty`` are keyed by ``(k, T, P, V)`` (everything fixed for a
    model); ``run`` says how the check ran (:class:`SequenceRun`); ``settings`` the checker's
    arguments (for reruns).  ``to_dict`` leaves out ``batched`` except for token weights (a
    loss has no per-batch mode to choose), and its counterexample and error name their
    fields for a sequence problem (:meth:`SequenceCounterexample.to_dict`,
    :meth:`SequenceError.to_dict`).
    """

    run: SequenceRun | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    partial: bool = False
    """The check covered less than asked (a requested ``(k, T, P)`` has no shape within the
    batch budget): an ``unbiased``/``scaled`` verdict then holds only on the shapes checked;
    ``assert_sequence_*`` fail unless ``allow_partial=True`` and the command line exits 1."""
    diagnosis: Diagnosis | None = None
    """The causes of a bias or a constant (``diagnose=True``; ``None`` when not asked or not
    biased/scaled): :func:`properties.sequence.diagnosis.diagnose` on the checked loss."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields (``json.dumps(report.to_dict())`` works)."""
        out = super().to_dict()
        out["scale"] = (
            None if self.scale is None else {key_text(k): c for k, c in self.scale.items()}
        )
        out["scale_uncertainty"] = (
            None
            if self.scale_uncertainty is None
            else {key_text(k): c for k, c in self.scale_uncertainty.items()}
        )
        out["run"] = None if self.run is None else self.run.to_dict()
        out["settings"] = dict(self.settings)
        if self.protocol != "token-weights":
            del out["batched"]  # a loss is always called on whole batches: only weights choose
        out["partial"] = self.partial
        if self.diagnosis is not None:  # only when asked: the JSON of a plain check is unchanged
            out["diagnosis"] = self.diagnosis.to_dict()
        # always in the sequence JSON (the one-step JSON has it only when set)
        out["scale_note"] = None if self.scale_note is None else self.scale_note.to_dict()
        return out

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)
