r"""The rewrites of a sequence loss that the diagnosis (:mod:`properties.sequence.diagnosis`) probes.

* :func:`logits_via_log_probs`: the loss's ``logits`` reach the parameters only through
  ``log_probs``, so that a loss that reads its logits gets token weights;
* :func:`pad_with_token`: the padded tokens are not the EOS id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

FAITHFUL_RTOL = 1e-5
"""A loss that reads ``logits`` keeps its E[g] when they are routed through ``log_probs``
(:func:`logits_via_log_probs`) if the two agree to this (float32 losses differ by ~1e-7)."""


def logits_via_log_probs(loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    r"""``loss_fn`` on a batch whose ``logits`` reach the parameters only through ``log_probs``.

    ``logits' = logits.detach() + e_{y_t} (lp - lp.detach()) / (1 - \pi(y_t))``: equal in
    value, and :math:`\partial\,\mathrm{log\_softmax}(\mathrm{logits}')[y_t] / \partial
    lp = 1`, so a loss that gathers the sampled tokens' log-softmax keeps its gradient, now
    carried by the token weights.  Any other use of the logits changes the gradient, which
    the caller detects by comparing :math:`E[g]` with the unwrapped loss's.
    """

    def wrapped(batch: Any) -> Any:
        import torch  # type: ignore[import-not-found,unused-ignore]

        lp = batch.log_probs
        onehot = torch.zeros_like(batch.logits).scatter(-1, batch.tokens[..., None], 1.0)
        lift = (lp - lp.detach()) / (1.0 - lp.detach().exp()).clamp(min=FAITHFUL_RTOL)
        logits = batch.logits.detach() + onehot * lift[..., None]
        return loss_fn(dataclasses.replace(batch, logits=logits))

    wrapped.__name__ = getattr(loss_fn, "__name__", "loss")
    return wrapped


def pad_with_token(loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``loss_fn`` on a batch whose padded tokens are token 1 instead of the EOS id."""

    def wrapped(batch: Any) -> Any:
        import torch  # type: ignore[import-not-found,unused-ignore]

        tokens = torch.where(batch.mask > 0, batch.tokens, torch.ones_like(batch.tokens))
        return loss_fn(dataclasses.replace(batch, tokens=tokens))

    wrapped.__name__ = getattr(loss_fn, "__name__", "loss")
    return wrapped


__all__ = ["FAITHFUL_RTOL", "logits_via_log_probs", "pad_with_token"]
