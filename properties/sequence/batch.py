r"""The batch a sequence-level loss receives (:class:`SequenceBatch`), and its conventions.

The setting is a tabular autoregressive policy over responses
:math:`y = (y_1, \dots, y_L)` built from a vocabulary of ``V`` tokens:

* token ``0`` is EOS (:data:`EOS_TOKEN_ID`); tokens ``1..V-1`` are shown as ``a, b, c, ...``.
  A response ends at its first EOS (which belongs to the response), or after ``T = max_len``
  tokens without one (truncated, as a response-length cap does).
* Padding after the end of a response is the EOS id (:data:`PAD_TOKEN_ID` ``== EOS_TOKEN_ID``),
  as many libraries pad with ``eos_token_id``; the ``mask`` is 1.0 on response tokens
  (EOS included) and 0.0 on padding, so ``tokens != pad_token_id`` is *not* the mask.
* Every live prefix (no EOS yet, length ``0..T-1``) is a node with its own ``V`` logits;
  padding positions read the logits of one extra *after-the-end* node.  The objective does
  not depend on that node, so any gradient a loss sends through padding shows up there.
* With ``P`` prompts each prompt has its own nodes (its own policy and reward table).  The
  batch holds ``k`` responses per prompt, prompt-major: rows ``p*k .. p*k+k-1`` answer prompt
  ``p``, and ``group[row] == p``.

A loss is minimised; the checker's estimate of the ascent direction is
:math:`g = -\nabla_\theta\,\mathrm{loss}`.  The target is
:math:`\nabla_\theta J`, :math:`J(\theta) = \frac1P\sum_p \big(E_{y\sim\pi_p}[R_p(y)]
- \beta\,\mathrm{KL}(\pi_p\,\|\,\pi_{\mathrm{ref},p})\big)` with the sequence-level reverse KL
(``beta = kl_coef``, 0 by default): the *mean* over the batch's prompts, so a loss averaged
over all ``P*k`` rows is the unbiased one.  Off-policy, the responses are drawn from a behaviour
policy :math:`\pi_{\mathrm{old}}` and ``old_log_probs`` are its log-probabilities; on-policy
``old_log_probs`` equal ``log_probs`` in value (detached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EOS_TOKEN_ID = 0
"""The id of the end-of-sequence token."""

PAD_TOKEN_ID = EOS_TOKEN_ID
"""Padding after the end of a response uses the EOS id."""


@dataclass(frozen=True)
class SequenceBatch:
    r"""``B = P * k`` responses, padded to ``T = max_len``, as float64/int64 torch tensors.

    ``logits`` ``(B, T, V)`` and ``log_probs`` ``(B, T)`` are differentiable with respect to
    the policy's parameters (``log_probs[b, t] = log_softmax(logits[b, t])[tokens[b, t]]``,
    padding positions included); everything else is detached.  ``tokens`` ``(B, T)`` are the
    responses, padded with the EOS id after their end; ``mask`` ``(B, T)`` is 1.0 on every
    response token *including* the EOS that ends it and 0.0 on padding (a response cut at
    ``T`` tokens without EOS has no EOS to count).

    ``reward_fn(tokens (m, T) int64, group (m,) int64) -> (m,)`` scores any responses of the
    prompts ``group`` (the same table that produced ``rewards``), and ``greedy_tokens``
    ``(P, T)`` holds each prompt's greedy response under the current policy (ties to the
    lowest token id), padded like ``tokens``: enough for a baseline such as ReMax's reward of
    the greedy response.  ``kl_coef`` is the :math:`\beta` of the objective being checked
    (a loss with a KL term may read it instead of hard-coding its own).  A baseline that
    depends on the sampled responses only through the *other* responses of the group leaves
    the gradient unbiased; one that depends on a response's own tokens does not.
    ``reward_fn`` is a deterministic table lookup: it must not be used to query the policy.

    **Tool tokens** (``check_sequence_loss(..., tool_tokens=True)``: a multi-turn rollout in
    which a tool's output is spliced into the response): every *odd* position
    ``t = 1, 3, 5, ...`` of a response is the environment's.  Its token (EOS included: the
    environment may end the episode) is drawn from a fixed next-token distribution of the
    prefix, not from :math:`\pi`, and that distribution is the same under the current, old
    and reference policies.  Then ``mask`` has *holes*: 0.0 at the tool's positions, 1.0 at
    the policy's tokens up to the end (so ``mask`` is no longer a prefix of ones, and its sum
    is the number of the policy's tokens).  ``log_probs``, ``old_log_probs`` and
    ``ref_log_probs`` are still filled at the tool's positions (the logits' scores of tokens
    the policy did not choose), but :math:`\log\pi(y)` sums only the masked positions: the
    objective :math:`J` (rewards and KL alike) does not depend on the logits at the prefixes
    the tool continues, so :math:`\nabla J` is 0 there, and a loss that sends gradient
    through a tool's position is biased.  Importance ratios and KL estimates over the masked
    positions are exact: the environment's factors cancel.

    **Inference-engine log-probs** ``sampling_log_probs`` ``(B, T)`` (detached): the
    log-probabilities of the engine that generated the responses (vLLM's), beside the
    trainer's ``old_log_probs``.  By default the engine is the behaviour policy and the two are
    equal; with ``check_sequence_loss(..., sampling_mismatch=True)`` the responses are drawn from
    the engine's policy :math:`\pi_s`, a small random perturbation of :math:`\pi_{\mathrm{old}}`
    (different kernels, lower precision), so that the batch's responses follow :math:`\pi_s`
    while ``old_log_probs`` still score them under :math:`\pi_{\mathrm{old}}`.  The full
    correction :math:`\pi_{\mathrm{old}}(y)/\pi_s(y)` (the product over the masked positions)
    restores :math:`E_{\pi_{\mathrm{old}}}`; a truncated one (TIS) or none leaves a bias.

    **A critic's values** ``values`` ``(B, T)`` (detached): ``values[b, t]`` is the value of the
    prefix ``y_{<t}`` that position ``t`` continues, read from a table over the prefixes (one
    number per node, like the logits), and 0.0 on padding (the after-the-end node: the
    episode is over, nothing is left to earn).  The table is 0 by default; with
    ``check_sequence_loss(..., values="random")`` the checker draws it independently of the
    policy (a critic that is wrong), with ``values="exact"`` it is
    :math:`V^\pi(y_{<t}) = E_\pi[R \mid y_{<t}]` of the current policy (a perfect critic).
    GAE with :math:`\gamma = \lambda = 1` telescopes to :math:`R - V(y_{<t})`, a baseline that
    depends only on the prefix, so it is unbiased for *any* table; :math:`\lambda < 1` is
    unbiased only with the exact values.
    """

    logits: Any
    log_probs: Any
    tokens: Any
    mask: Any
    rewards: Any
    old_log_probs: Any
    ref_log_probs: Any
    group: Any
    greedy_tokens: Any
    reward_fn: Callable[[Any, Any], Any]
    num_prompts: int
    group_size: int
    vocab_size: int
    max_len: int
    kl_coef: float = 0.0
    eos_token_id: int = EOS_TOKEN_ID
    pad_token_id: int = PAD_TOKEN_ID
    sampling_log_probs: Any = None
    values: Any = None


__all__ = ["EOS_TOKEN_ID", "PAD_TOKEN_ID", "SequenceBatch"]
