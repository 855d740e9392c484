"""The entry type of the sequence catalogue, its verdicts and categories, and the named
parameters of the entries (each a value real configurations use)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["unbiased", "scaled", "biased", "error"]
"""The four verdicts of the checkers."""

VERDICTS: tuple[Verdict, ...] = ("unbiased", "scaled", "biased", "error")

Protocol = Literal["loss", "weights"]
"""``loss``: ``fn(batch) -> scalar tensor``; ``weights``: NumPy ``fn(rewards, mask, log_probs, ...)``."""

SettledBy = Literal["literature", "derived+oracle", "by construction"]
"""How an expected verdict was settled (see the module docstring)."""

CATEGORIES: tuple[str, ...] = (
    "correct",
    "baseline",
    "normalisation",
    "aggregation",
    "returns",
    "masking",
    "importance",
    "kl",
    "regularisation",
    "error",
)
"""The allowed values of :attr:`SequenceEntry.category`."""

Scale = Callable[[int, int, int], float]
"""``(k, T, P) -> c``: the constant of a scaled estimator."""


# --------------------------------------------------------------------------- constants
# Named parameters of the entries (each is a value real configurations use).

KL_COEF = 0.1
"""The ``kl_coef`` (beta) every KL entry is checked with; the weight functions hard-code it."""

PPO_CLIP = 0.2
"""The PPO clip range ``[1 - eps, 1 + eps]``."""

TIS_CAP = 2.0
"""Truncated importance sampling cap ``C`` of ``min(ratio, C)`` (TIS uses 2)."""

GRPO_STD_EPS = 1e-4
"""The ``std + eps`` guard of TRL's GRPO advantage normalisation."""

WHITEN_EPS = 1e-8
"""The ``std + eps`` guard of batch-level advantage whitening."""

GAMMA = 0.9
"""The discount of the discounted reward-to-go entry (the objective is undiscounted)."""

ENTROPY_COEF = 0.01
"""Coefficient of the entropy bonus."""

DROPOUT_KEEP = 0.9
"""Fraction of tokens the nondeterministic entries keep."""

GAE_LAMBDA = 0.95
r"""The GAE :math:`\lambda` of the biased-critic entries (verl's and OpenRLHF's default)."""

MISMATCH_TIS_CAP = 1.1
"""The cap ``C`` of the truncated training-inference correction ``min(pi_old/pi_sampler, C)``:
small enough that it binds on responses the sampler under-weights by more than 10%, which
the checker's perturbation of the sampler makes common."""


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class SequenceSettings:
    """The keywords an entry must be checked with (those of ``properties.check_sequence_loss``).

    ``batched`` applies to weight functions only (``check_token_weights(batched=...)``).
    """

    group_sizes: tuple[int, ...] = (2, 3, 4)
    vocab_size: int = 3
    max_len: int = 3
    kl_coef: float = 0.0
    off_policy: bool = False
    num_prompts: tuple[int, ...] = (1,)
    batched: bool = False
    tool_tokens: bool = False
    sampling_mismatch: bool = False
    values: str | None = None

    def checker_kwargs(self, protocol: Protocol) -> dict[str, Any]:
        """Keyword arguments for ``check_sequence_loss`` / ``check_token_weights``.

        >>> SequenceSettings(kl_coef=0.1).checker_kwargs("loss")["kl_coef"]
        0.1
        >>> "batched" in SequenceSettings().checker_kwargs("loss")
        False
        """
        out: dict[str, Any] = {
            "group_sizes": self.group_sizes,
            "vocab_size": self.vocab_size,
            "max_len": self.max_len,
            "kl_coef": self.kl_coef,
            "off_policy": self.off_policy,
            "num_prompts": self.num_prompts,
        }
        if protocol == "weights":
            out["batched"] = self.batched
        for flag in ("tool_tokens", "sampling_mismatch"):  # only when set: the weight
            if getattr(self, flag):  # protocol has neither keyword
                out[flag] = True
        if self.values is not None:
            out["values"] = self.values
        return out


@dataclass(frozen=True)
class SequenceEntry:
    """One named sequence estimator with the verdict an exact checker must reach on it.

    ``scale`` is ``(k, T, P) -> c`` for ``expected == "scaled"`` and ``None`` otherwise;
    :attr:`derivation` is the function's docstring (the derivation on paper).
    """

    name: str
    fn: Callable[..., Any]
    protocol: Protocol
    expected: Verdict
    scale: Scale | None
    settings: SequenceSettings
    category: str
    settled_by: SettledBy
    description: str
    source: str = field(default="")

    @property
    def derivation(self) -> str:
        """The derivation of the expected verdict (the function's docstring)."""
        return (self.fn.__doc__ or "").strip()
