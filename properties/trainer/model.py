r"""A causal language model whose distribution the checker can enumerate: :class:`TabularCausalLM`.

The sequence checker's policy is tabular (:mod:`impl.sequence`): ``theta`` ``(P, N+1, V)``
holds ``V`` logits for every live prefix (*node*) of every prompt, plus one after-the-end
node per prompt.  :class:`TabularCausalLM` puts that table behind the forward of a Hugging
Face causal LM, so that a trainer's own plumbing (the model call, the logits shift,
temperature, left-padded prompts, masks) runs as it is:

* **Vocabulary.**  Ids ``0..V-1`` are the response tokens (0 is EOS and padding); prompt
  ``p`` is the id ``V + p`` repeated :func:`prompt_length` ``(p)`` times (2 or 3, so that
  prompts of a batch with ``P >= 2`` have different lengths and are left-padded).  The
  model's vocabulary is ``V + P``: the logits of the prompt ids are the constant
  :data:`PROMPT_LOGIT` (their probability is 0 in float64, and they carry no parameter).
* **Positions.**  ``logits[b, t]`` scores token ``t + 1``, as real models do: it is a
  function of the tokens at positions ``<= t`` whose ``attention_mask`` is 1 (the
  *context*).  A context that is a whole prompt ``p`` followed by a live prefix ``c`` (no
  EOS, fewer than ``T`` tokens) reads ``theta[p, node(c)]``; every other context (inside a
  prompt, after an EOS or ``T`` response tokens, a masked position, ids out of place) reads
  the after-the-end node of the row's prompt, on which the objective does not depend, so
  any gradient a loss sends there is a bias.
* **Temperature.**  The logits are ``temperature * theta``: sampling at that temperature
  (``softmax(logits / temperature)``) is the checker's policy ``softmax(theta)``.

>>> import pytest; torch = pytest.importorskip("torch")
>>> layout = PromptLayout(vocab_size=2, max_len=2, num_prompts=1)
>>> model = TabularCausalLM(torch.zeros(1, 3, 2, dtype=torch.float64), layout)
>>> ids = torch.tensor([[2, 2, 1, 0]])       # prompt 0 (two ids 2), then 'a <eos>'
>>> model(input_ids=ids).logits.shape         # (B, L, V + P)
torch.Size([1, 4, 3])
>>> model.nodes(ids, torch.ones_like(ids)).tolist()   # after the end, start, 'a', after the end
[[2, 0, 1, 2]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch  # type: ignore[import-not-found,unused-ignore]  # this module is imported lazily

from impl.sequence import response_space
from impl.types import IntArray

PROMPT_LOGIT = -1.0e4
"""The logit of every prompt id at every position.  ``exp(-1e4 / temperature)`` is 0 in
float64 for any temperature up to :data:`MAX_TEMPERATURE`, so prompt ids never change the
response distribution; a loss that scores a prompt id still gets a finite log-probability,
whose gradient reaches the after-the-end node."""

MAX_TEMPERATURE = 10.0
"""Largest sampling temperature the model accepts (see :data:`PROMPT_LOGIT`)."""

PROMPT_BASE_LENGTH = 2
"""Prompt ``p`` has ``PROMPT_BASE_LENGTH + p % 2`` ids: at least two, so that a loss that
leaves prompt tokens in its mask scores one, and different lengths for ``P >= 2``."""


def prompt_length(p: int) -> int:
    """The number of ids of prompt ``p``.

    >>> [prompt_length(p) for p in range(3)]
    [2, 3, 2]
    """
    return PROMPT_BASE_LENGTH + p % 2


@dataclass(frozen=True)
class PromptLayout:
    """The ids of a shape: ``V`` response tokens, length cap ``T``, ``P`` prompts.

    >>> layout = PromptLayout(vocab_size=3, max_len=2, num_prompts=2)
    >>> layout.prompt_ids([0, 1]).tolist(), layout.prompt_mask([0, 1]).tolist()
    ([[0, 3, 3], [4, 4, 4]], [[0, 1, 1], [1, 1, 1]])
    """

    vocab_size: int
    max_len: int
    num_prompts: int

    @property
    def model_vocab_size(self) -> int:
        """``V + P``: response ids, then one id per prompt."""
        return self.vocab_size + self.num_prompts

    @property
    def prompt_width(self) -> int:
        """The width of the left-padded prompts (the longest prompt)."""
        return max(prompt_length(p) for p in range(self.num_prompts))

    def prompt_ids(self, group: Any) -> IntArray:
        """Left-padded prompt ids ``(B, prompt_width)`` of the rows' prompts (pad: the EOS id 0)."""
        width = self.prompt_width
        rows = [
            [0] * (width - prompt_length(int(p))) + [self.vocab_size + int(p)] * prompt_length(int(p))
            for p in np.asarray(group).reshape(-1)
        ]
        out: IntArray = np.array(rows, dtype=np.int64).reshape(-1, width)
        return out

    def prompt_mask(self, group: Any) -> IntArray:
        """1 on the prompt ids, 0 on the left padding ``(B, prompt_width)``."""
        out: IntArray = (self.prompt_ids(group) != 0).astype(np.int64)
        return out


NODES_CACHE_SIZE = 4096
"""Most node maps :meth:`TabularCausalLM.nodes` keeps (emptied when full): a shape's batches
(at most the looped budget, a few hundred) times its micro-batches fit."""

_NODES: dict[tuple[Any, ...], Any] = {}
"""Node maps by :func:`_nodes_key` (layout, dtypes, shapes and bytes of the ids and mask)."""


def _nodes_key(layout: PromptLayout, input_ids: Any, attention_mask: Any) -> tuple[Any, ...] | None:
    """The key of a node map: the layout and the exact values of both inputs, or ``None`` when
    they are not plain CPU tensors whose bytes can be read (e.g. under ``vmap``)."""
    if type(input_ids) is not torch.Tensor or type(attention_mask) is not torch.Tensor:
        return None
    try:
        ids = input_ids.detach().numpy()
        mask = attention_mask.detach().numpy()
    except (RuntimeError, TypeError):
        return None
    return (
        layout,
        ids.dtype.str,
        ids.shape,
        ids.tobytes(),
        mask.dtype.str,
        mask.shape,
        mask.tobytes(),
    )


@dataclass
class CausalLMOutput:
    """What the forward returns: ``logits`` ``(B, L', V + P)`` (``out.logits`` or ``out["logits"]``)."""

    logits: Any

    def __getitem__(self, key: str) -> Any:
        if key != "logits":
            raise KeyError(key)
        return self.logits


class _Config:
    model_type = "tabular"
    final_logit_softcapping = None
    logit_scale = None
    output_router_logits = False

    def get_text_config(self) -> _Config:
        return self


class _Backbone:
    def __init__(self, lm: TabularCausalLM) -> None:
        self.lm = lm

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, **_: Any) -> Any:
        lm = self.lm
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        rows = lm.num_rows * lm.layout.num_prompts
        hidden = torch.nn.functional.one_hot(lm.nodes(input_ids, mask), rows).to(lm.table.dtype)
        return CausalLMHidden(last_hidden_state=hidden)


class _Head:
    bias = None

    def __init__(self, lm: TabularCausalLM) -> None:
        self.lm = lm

    @property
    def weight(self) -> Any:
        lm = self.lm
        flat = lm.table.reshape(-1, lm.layout.vocab_size) * lm.temperature
        fixed = torch.full((lm.layout.num_prompts, flat.shape[0]), PROMPT_LOGIT, dtype=flat.dtype)
        return torch.cat([flat.T, fixed])


@dataclass
class CausalLMHidden:
    """What the backbone returns: ``last_hidden_state`` ``(B, L, P (N+1))``."""

    last_hidden_state: Any


class TabularCausalLM(torch.nn.Module):  # type: ignore[misc,unused-ignore]
    r"""The tabular policy ``theta`` ``(P, N+1, V)`` as a Hugging Face-style causal LM.

    ``forward(input_ids (B, L), attention_mask=None, logits_to_keep=0, **ignored)``
    returns :class:`CausalLMOutput` with ``logits`` ``(B, L, V + P)`` (the last
    ``logits_to_keep`` positions when it is positive; an index tensor selects positions).
    ``theta`` is the parameter ``table`` (a leaf the checker supplies per batch).  As a
    backbone and a linear head (``base_model``, ``get_output_embeddings()``, ``config``) it is
    the same function, so that code which patches a model's head (TRL's ``add_fused_lm_head``)
    runs on it.
    """

    def __init__(
        self, theta: Any, layout: PromptLayout, *, temperature: float = 1.0, trainable: bool = True
    ) -> None:
        super().__init__()
        space = response_space(layout.vocab_size, layout.max_len)
        expected = space.theta_shape(layout.num_prompts)
        table = torch.as_tensor(theta)
        if tuple(table.shape) != expected:
            raise ValueError(f"theta has shape {tuple(table.shape)}, expected {expected}")
        if trainable:
            self.table = torch.nn.Parameter(table)
        else:  # the checker's per-batch leaf (or a vmap-batched view of it): not a Parameter
            object.__setattr__(self, "table", table)
        self.layout = layout
        self.temperature = float(temperature)
        self.num_rows = space.num_rows
        self.end_node = space.end_node
        self._offsets = torch.from_numpy(space.depth_offsets.astype(np.int64))
        self._lengths = torch.tensor(
            [prompt_length(p) for p in range(layout.num_prompts)], dtype=torch.int64
        )

    # -- the parts libraries patch (e.g. TRL's add_fused_lm_head): a backbone and a linear head --
    @property
    def config(self) -> _Config:
        """A minimal model config (``get_text_config()``, no logit scaling or soft-capping)."""
        return _Config()

    @property
    def base_model(self) -> _Backbone:
        """The backbone: ``last_hidden_state`` ``(B, L, P (N+1))``, one-hot of the node each position reads."""
        return _Backbone(self)

    def get_output_embeddings(self) -> _Head:
        """The LM head: ``weight`` ``(V + P, P (N+1))``, so that ``hidden @ weight.T`` are the logits."""
        return _Head(self)

    def nodes(self, input_ids: Any, attention_mask: Any) -> Any:
        """The row of ``table.reshape(P * (N+1), V)`` each position reads, ``(B, L)``.

        A function of the layout and of the values of ``input_ids`` and ``attention_mask``
        only, kept in :data:`_NODES` (a copy is returned): the checker calls a trainer loss
        with the same ids on every problem of a shape, and this takes ~30 small tensor ops.
        """
        key = _nodes_key(self.layout, input_ids, attention_mask)
        if key is not None:
            hit = _NODES.get(key)
            if hit is not None:
                return hit.clone()
        out = self._nodes(input_ids, attention_mask)
        if key is not None:
            if len(_NODES) >= NODES_CACHE_SIZE:
                _NODES.clear()
            _NODES[key] = out.detach().clone()
        return out

    def _nodes(self, input_ids: Any, attention_mask: Any) -> Any:
        v = self.layout.vocab_size
        p_count = self.layout.num_prompts
        ids = input_ids.long()
        am = attention_mask != 0
        response = am & (ids >= 0) & (ids < v)
        prompt_tok = am & (ids >= v)
        known = prompt_tok & (ids < v + p_count)
        pid = torch.where(known, ids - v, torch.full_like(ids, -1))
        row_prompt = pid.amax(-1).clamp(min=0)  # (B,)
        n_resp = torch.cumsum(response.long(), -1)
        n_prompt = torch.cumsum(prompt_tok.long(), -1)
        junk = (
            (am & (ids < 0))
            | (prompt_tok & ~known)
            | (prompt_tok & (pid != row_prompt[..., None]))
            | (prompt_tok & (n_resp > 0))
        )
        eos = torch.cumsum((response & (ids == 0)).long(), -1)
        valid = (
            am
            & (torch.cumsum(junk.long(), -1) == 0)
            & (n_prompt == self._lengths[row_prompt][..., None])
            & (eos == 0)
            & (n_resp < self.layout.max_len)
        )
        # node code: digits (token - 1) in base b = V-1, most significant first (impl.sequence):
        # code_t = sum_{j <= t} d_j b^(n_t - n_j) = b^n_t cumsum(d_j b^-n_j), exact after rounding
        # while the context is live (n_t < T <= 8, b <= 26: below 2^53 with room to spare)
        depth = n_resp.clamp(max=self.layout.max_len - 1)
        base = float(v - 1)
        digit = torch.where(response, ids - 1, torch.zeros_like(ids)).clamp(min=0)
        scaled = digit.double() * torch.pow(base, -depth.double())
        code = (torch.cumsum(scaled, -1) * torch.pow(base, depth.double())).round().long()
        node = torch.where(valid, self._offsets[depth] + code, torch.full_like(ids, self.end_node))
        return row_prompt[..., None] * self.num_rows + node

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        logits_to_keep: Any = 0,
        **kwargs: Any,
    ) -> CausalLMOutput:
        """The logits of every position (position ``t`` scores token ``t + 1``)."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(
                "TabularCausalLM expects input_ids as a (B, L) integer tensor, got "
                f"{type(input_ids).__name__} of shape {getattr(input_ids, 'shape', None)}"
            )
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must be a tensor of input_ids' shape {tuple(input_ids.shape)}, "
                f"got {getattr(attention_mask, 'shape', type(attention_mask).__name__)}"
            )
        v = self.layout.vocab_size
        flat = self.table.reshape(-1, v)
        logits = flat[self.nodes(input_ids, attention_mask)] * self.temperature
        fixed = torch.full(
            (*logits.shape[:-1], self.layout.num_prompts), PROMPT_LOGIT, dtype=logits.dtype
        )
        logits = torch.cat([logits, fixed], dim=-1)
        if isinstance(logits_to_keep, int) and not isinstance(logits_to_keep, bool):
            if logits_to_keep > 0:
                logits = logits[:, -logits_to_keep:, :]
        elif isinstance(logits_to_keep, torch.Tensor):
            logits = logits[:, logits_to_keep, :]
        else:
            raise ValueError(f"logits_to_keep must be an int or an index tensor, got {logits_to_keep!r}")
        return CausalLMOutput(logits=logits)


__all__ = [
    "MAX_TEMPERATURE",
    "NODES_CACHE_SIZE",
    "PROMPT_BASE_LENGTH",
    "PROMPT_LOGIT",
    "CausalLMHidden",
    "CausalLMOutput",
    "PromptLayout",
    "TabularCausalLM",
    "prompt_length",
]
