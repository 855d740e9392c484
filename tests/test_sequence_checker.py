"""The sequence checker: verdicts, scales, multi-prompt, off-policy, KL, every error, the fallback (budget: ~40 s).

Small settings keep it cheap (``SMALL``: k in {2, 3}, T <= 2); the quality tier and the
catalogue engineers' oracle run the full defaults.  Every verdict asserted here is derived
in the loss's docstring-comment; the tests can fail (a wrong engine, tolerance or judging
would flip them).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from impl.errors import InvalidArgument
from properties.onestep.checker import EstimatorCheckFailure, EstimatorReport

torch = pytest.importorskip("torch")

from properties.sequence.checker import (  # noqa: E402 - after the torch skip
    SequenceCounterexample,
    SequenceError,
    assert_sequence_scaled,
    assert_sequence_unbiased,
    check_sequence_loss,
    check_token_weights,
    sequence_expectation,
)

pytestmark = pytest.mark.torch

SMALL: dict[str, Any] = {"group_sizes": (2, 3), "max_len": 2, "max_examples": 3}
"""Cheap settings: 8 shapes, three Hypothesis examples."""


# --------------------------------------------------------------------------- sample losses


def seqsum(b: Any) -> Any:
    return (b.log_probs * b.mask).sum(-1)


def reinforce(b: Any) -> Any:
    """Token sum per response, mean over the k responses: E = grad J (P = 1)."""
    return -(b.rewards * seqsum(b)).mean()


def rloo(b: Any) -> Any:
    """Leave-one-out baseline: independent of the response it weights: unbiased."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    base = (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)
    return -((r - base).reshape(-1) * seqsum(b)).mean()


def group_mean(b: Any) -> Any:
    """Self-inclusive group mean: E = (k-1)/k grad J."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    return -((r - r.mean(-1, keepdim=True)).reshape(-1) * seqsum(b)).mean()


def constant_length(b: Any) -> Any:
    """RLOO with every token divided by the constant max_len: E = grad J / T."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    adv = (r - (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)).reshape(-1)
    return -(adv[:, None] * b.log_probs * b.mask).sum() / (b.rewards.shape[0] * b.max_len)


def token_mean(b: Any) -> Any:
    """Length-normalised per response: the weight depends on the sampled length: biased."""
    return -(b.rewards * seqsum(b) / b.mask.sum(-1)).mean()


def mask_without_eos(b: Any) -> Any:
    """The EOS decision gets no gradient: biased wherever stopping matters."""
    m = b.mask * (b.tokens != b.eos_token_id)
    return -(b.rewards * (b.log_probs * m).sum(-1)).mean()


def mask_with_padding(b: Any) -> Any:
    """Padding positions counted: moves the after-the-end node, where grad J = 0: biased."""
    return -(b.rewards * b.log_probs.sum(-1)).mean()


def entropy_bonus(b: Any) -> Any:
    """An entropy term changes the objective: biased against J."""
    p = torch.softmax(b.logits, -1)
    ent = -(p * torch.log_softmax(b.logits, -1)).sum(-1)
    return reinforce(b) - 0.01 * (ent * b.mask).sum(-1).mean()


def ratio_not_detached(b: Any) -> Any:
    """exp(lp - lp) == 1 with zero gradient: E = 0."""
    ratio = torch.exp(b.log_probs - b.log_probs)
    return -(ratio * b.rewards[:, None] * b.mask).sum(-1).mean()


def float32_loss(b: Any) -> Any:
    """REINFORCE computed in float32: unbiased up to float32 round-off."""
    lp, m, r = b.log_probs.float(), b.mask.float(), b.rewards.float()
    return -(r * (lp * m).sum(-1)).mean()


def tiny_bias(b: Any) -> Any:
    """REINFORCE plus a millionth of a length-normalised loss: biased by ~1e-6 of |grad J|."""
    return reinforce(b) + 1e-6 * token_mean(b)


def kl_in_reward(b: Any) -> Any:
    """k1 estimator of the sequence KL in the reward (detached): E = grad (E R - beta KL)."""
    kl = ((b.log_probs - b.ref_log_probs) * b.mask).sum(-1).detach()
    return -((b.rewards - b.kl_coef * kl) * seqsum(b)).mean()


def kl_k3_in_loss(b: Any) -> Any:
    """k3 per token in the loss: its gradient is not the sequence KL's: biased."""
    d = b.ref_log_probs - b.log_probs
    return reinforce(b) + b.kl_coef * ((torch.exp(d) - d - 1) * b.mask).sum(-1).mean()


def sequence_is(b: Any) -> Any:
    """Sequence-level importance ratio pi/pi_old: unbiased off-policy."""
    ratio = torch.exp(((b.log_probs - b.old_log_probs) * b.mask).sum(-1))
    return -(ratio * b.rewards).mean()


def ppo_clip(b: Any) -> Any:
    """Token ratios clipped to [0.8, 1.2], RLOO advantage: on-policy the ratio is 1 (inside the
    clip) with gradient grad log pi: unbiased; off-policy biased."""
    r = b.rewards.view(b.num_prompts, b.group_size)
    adv = (r - (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)).reshape(-1)[:, None]
    ratio = torch.exp(b.log_probs - b.old_log_probs)
    return -(torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv) * b.mask).sum(-1).mean()


def per_prompt_sum(b: Any) -> Any:
    """RLOO, mean within each prompt's group, summed over prompts: P times the (mean) target."""
    return rloo(b) * b.num_prompts


def batch_whitening(b: Any) -> Any:
    """Advantages whitened over the whole batch (all prompts): biased."""
    a = (b.rewards - b.rewards.mean()) / (b.rewards.std() + 1e-6)
    return -(a * seqsum(b)).mean()


def remax(b: Any) -> Any:
    """Baseline = reward of the prompt's greedy response (independent of the samples): unbiased."""
    base = b.reward_fn(b.greedy_tokens, torch.arange(b.num_prompts))
    return -((b.rewards - base[b.group]) * seqsum(b)).mean()


def not_vmappable(b: Any) -> Any:
    """REINFORCE behind data-dependent Python control flow (vmap cannot run it): unbiased."""
    if float(b.rewards.abs().sum()) >= 0.0:
        return reinforce(b)
    return reinforce(b) * 2  # pragma: no cover - never taken


def not_vmappable_biased(b: Any) -> Any:
    """Token-mean behind boolean-mask indexing (vmap cannot run it): biased."""
    lengths = b.mask.sum(-1)
    return (
        -(b.rewards[:, None] * b.log_probs / lengths[:, None])[b.mask.bool()].sum()
        / b.rewards.shape[0]
    )


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("loss", [reinforce, rloo, float32_loss, remax, not_vmappable])
def test_correct_losses_are_unbiased(loss: Any) -> None:
    report = check_sequence_loss(loss, **SMALL)
    assert report.verdict == "unbiased", report.message
    assert isinstance(report, EstimatorReport) and report.ok
    assert report.protocol == "sequence-loss"
    assert_sequence_unbiased(report)


def test_float32_internal_arithmetic_is_seen_and_tolerated() -> None:
    report = check_sequence_loss(float32_loss, **SMALL)
    assert report.run is not None and "float32" in report.run.dtypes
    assert report.verdict == "unbiased"


@pytest.mark.parametrize(
    ("loss", "scale"),
    [
        (group_mean, lambda k, t, p: (k - 1) / k),
        (constant_length, lambda k, t, p: 1.0 / t),
    ],
)
def test_scaled_losses_have_one_constant_per_key(loss: Any, scale: Any) -> None:
    report = assert_sequence_scaled(loss, scale, **SMALL)
    assert report.scale is not None
    assert set(report.scale) == {(k, t, 1, v) for k in (2, 3) for t in (1, 2) for v in (2, 3)}
    with pytest.raises(EstimatorCheckFailure, match="scaled with c"):
        assert_sequence_scaled(report, lambda k, t, p: 1.0)


@pytest.mark.parametrize(
    "loss",
    [token_mean, mask_without_eos, mask_with_padding, entropy_bonus, ratio_not_detached, tiny_bias],
)
def test_buggy_losses_are_biased(loss: Any) -> None:
    report = check_sequence_loss(loss, **SMALL)
    assert report.verdict == "biased", report.message
    cex = report.counterexample
    assert isinstance(cex, SequenceCounterexample)
    assert cex.found_by.startswith("battery")
    assert np.any(np.abs(cex.discrepancy) > cex.tolerance)
    with pytest.raises(EstimatorCheckFailure, match="BIASED"):
        assert_sequence_unbiased(report)


def test_length_bias_counterexample_shows_two_lengths_and_their_weights() -> None:
    report = check_sequence_loss(token_mean, **SMALL)
    cex = report.counterexample
    assert isinstance(cex, SequenceCounterexample)
    first, second = cex.length_pair
    assert first.length < second.length
    # token-mean: each token of y gets (its advantage) / len(y); reinforce gives them all one weight
    assert len(first.weights) == first.length and len(second.weights) == second.length
    text = report.message
    assert "<eos>" in text and f"{first.response!r}" in text and f"{second.response!r}" in text
    assert "the loss gives each token an expected weight of" in text


def test_padding_bias_shows_the_after_the_end_node() -> None:
    report = check_sequence_loss(mask_with_padding, **SMALL)
    assert "(after the end)" in report.message


def test_ratio_with_zero_gradient_is_a_nonpositive_scale() -> None:
    report = check_sequence_loss(ratio_not_detached, **SMALL)
    assert report.counterexample is not None
    assert report.counterexample.reference_multiple == pytest.approx(0.0, abs=1e-12)


def test_a_constant_scale_of_one_plus_a_millionth_is_not_unbiased() -> None:
    report = check_sequence_loss(lambda b: reinforce(b) * (1 + 1e-6), **SMALL)
    assert report.verdict == "scaled"
    assert report.scale is not None
    assert all(abs(c - (1 + 1e-6)) < 1e-9 for c in report.scale.values())


# --------------------------------------------------------------------------- KL, off-policy, prompts


def test_kl_objective() -> None:
    opts = {**SMALL, "kl_coef": 0.5}
    assert check_sequence_loss(kl_in_reward, **opts).verdict == "unbiased"
    assert check_sequence_loss(reinforce, **opts).verdict == "biased"
    assert check_sequence_loss(kl_k3_in_loss, **opts).verdict == "biased"
    # with kl_coef = 0 the k1 term vanishes (it reads batch.kl_coef)
    assert check_sequence_loss(kl_in_reward, **SMALL).verdict == "unbiased"


def test_off_policy() -> None:
    opts = {**SMALL, "off_policy": True}
    assert check_sequence_loss(sequence_is, **opts).verdict == "unbiased"
    assert check_sequence_loss(reinforce, **opts).verdict == "biased"
    assert check_sequence_loss(ppo_clip, **opts).verdict == "biased"
    assert check_sequence_loss(ppo_clip, **SMALL).verdict == "unbiased"


def test_multi_prompt_batches() -> None:
    opts = {**SMALL, "num_prompts": (1, 2), "group_sizes": (2,)}
    # a mean over all P*k rows is the mean over the prompts of their group means: the target
    assert check_sequence_loss(rloo, **opts).verdict == "unbiased"
    # a sum over the prompts where the objective averages them: c = P
    report = assert_sequence_scaled(per_prompt_sum, lambda k, t, p: float(p), **opts)
    assert "has the value of P (what a sum over the prompts gives" in report.message
    assert check_sequence_loss(remax, **opts).verdict == "unbiased"
    assert check_sequence_loss(batch_whitening, **opts).verdict == "biased"


# --------------------------------------------------------------------------- the protocol


def protocol_probe(b: Any) -> Any:
    """Asserts the SequenceBatch conventions, then REINFORCE (runs per batch: it reads values)."""
    B, T, V = b.logits.shape
    assert B == b.num_prompts * b.group_size and T == b.max_len and V == b.vocab_size
    assert b.logits.dtype == torch.float64 and b.tokens.dtype == torch.int64
    assert b.logits.requires_grad and b.log_probs.requires_grad
    assert not (
        b.rewards.requires_grad or b.old_log_probs.requires_grad or b.ref_log_probs.requires_grad
    )
    assert torch.allclose(
        b.log_probs, torch.log_softmax(b.logits, -1).gather(-1, b.tokens[..., None])[..., 0]
    )
    assert torch.equal(b.old_log_probs, b.log_probs.detach())  # on-policy
    assert torch.equal(b.group, torch.arange(B) // b.group_size)
    lengths = b.mask.sum(-1).long()
    for j in range(B):
        n = int(lengths[j])
        assert torch.all(b.mask[j, :n] == 1) and torch.all(b.mask[j, n:] == 0)
        assert torch.all(b.tokens[j, n:] == b.pad_token_id)
        eos = (b.tokens[j, :n] == b.eos_token_id).nonzero()
        assert (eos.numel() == 1 and int(eos[0, 0]) == n - 1) or (eos.numel() == 0 and n == T)
    assert torch.equal(b.reward_fn(b.tokens, b.group), b.rewards)
    assert b.greedy_tokens.shape == (b.num_prompts, T)
    assert b.kl_coef == 0.25
    return reinforce(b) + 0.0 * b.logits.sum()


def test_the_batch_follows_the_protocol() -> None:
    report = check_sequence_loss(
        protocol_probe, **{**SMALL, "kl_coef": 0.25, "num_prompts": (1, 2), "group_sizes": (2,)}
    )
    # the KL objective makes REINFORCE biased: but no assertion failed (that would be "error")
    assert report.verdict == "biased", report.message
    assert report.run is not None and report.run.mode == "loop"


def test_fallback_is_reported_and_still_finds_bias() -> None:
    report = check_sequence_loss(not_vmappable_biased, **SMALL)
    assert report.verdict == "biased"
    assert report.run is not None and report.run.mode == "loop"
    assert report.run.fallback_reason is not None and "vmap" in report.run.fallback_reason
    # the fallback plans smaller problems (evaluated batches, multisets and their re-ordered copies)
    from properties.sequence.problems import MULTISET_BATCHES_LOOPED, MULTISET_BATCHES_VECTORISED

    assert report.run.batch_budget == MULTISET_BATCHES_LOOPED < MULTISET_BATCHES_VECTORISED
    assert "fallback" in report.message


# --------------------------------------------------------------------------- errors


_calls = [0]


def _stateful(b: Any) -> Any:
    _calls[0] += 1
    return reinforce(b) * (1.0 + 0.5 * (_calls[0] % 2))


def _exits(b: Any) -> Any:
    raise SystemExit(1)


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def _bad_str(b: Any) -> Any:
    raise _BadStr()


ERROR_CASES = [
    ("raised", lambda b: 1 / 0, "ZeroDivisionError"),
    ("raised", _bad_str, "_BadStr"),
    ("exited", _exits, "SystemExit"),
    ("returned-none", lambda b: None, "None"),
    ("bad-type", lambda b: float(reinforce(b).detach()), "float"),
    ("bad-type", lambda b: b.tokens.sum(), "floating-point"),
    ("wrong-shape", lambda b: -(b.rewards * seqsum(b)), "shape"),
    ("non-finite", lambda b: reinforce(b) * float("nan"), "nan"),
    (
        "non-finite",
        lambda b: -(b.rewards * torch.sqrt(seqsum(b) - seqsum(b).detach())).mean(),
        "gradient",
    ),
    (
        "no-grad",
        lambda b: -(b.rewards * (b.log_probs.detach() * b.mask).sum(-1)).mean(),
        "no gradient",
    ),
    ("nondeterministic", _stateful, "different"),
    ("nondeterministic", lambda b: reinforce(b) * (1 + torch.rand(())), "different"),
    ("mutated-input", lambda b: -(b.rewards.sub_(0.0) * seqsum(b)).mean(), "batch.rewards"),
    (
        "mutated-input",
        lambda b: reinforce(b) + 0 * b.log_probs.clamp_(min=-50).sum(),
        "batch.log_probs",
    ),
    ("mutated-input", lambda b: reinforce(b) + 0 * b.group.add_(0).sum(), "batch.group"),
    ("printed", lambda b: print("loss") or reinforce(b), "printed"),
]


@pytest.mark.parametrize(("kind", "loss", "text"), ERROR_CASES)
def test_every_misbehaviour_is_a_precise_error(kind: str, loss: Any, text: str) -> None:
    report = check_sequence_loss(loss, **SMALL)
    assert report.verdict == "error", report.message
    err = report.error
    assert isinstance(err, SequenceError)
    assert err.kind == kind, report.message
    assert text in report.message
    assert report.message.startswith("Loss ")
    json.loads(report.to_json())


def test_errors_name_the_batch_as_token_strings() -> None:
    report = check_sequence_loss(lambda b: 1 / 0, **SMALL)
    err = report.error
    assert isinstance(err, SequenceError) and err.batch
    assert "Triggered by the batch" in report.message and "'<eos>'" in report.message


def test_bad_arguments() -> None:
    for kwargs, match in [
        ({"group_sizes": ()}, "group_sizes"),
        ({"group_sizes": (0,)}, "group_sizes"),
        ({"vocab_size": 1}, "vocab_size"),
        ({"max_len": 0}, "max_len"),
        ({"kl_coef": -1.0}, "kl_coef"),
        ({"off_policy": 1}, "off_policy"),
        ({"num_prompts": (0,)}, "num_prompts"),
        ({"seed": -1}, "seed"),
        ({"rtol": 0.0}, "rtol"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            check_sequence_loss(reinforce, **kwargs)
    with pytest.raises(InvalidArgument, match="callable"):
        check_sequence_loss(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- token weights


def w_reinforce(rewards: Any, mask: Any, log_probs: Any) -> Any:
    return rewards[..., None] * mask / rewards.shape[-1]


def w_token_mean(rewards: Any, mask: Any, log_probs: Any) -> Any:
    return rewards[..., None] * mask / mask.sum(-1, keepdims=True) / rewards.shape[-1]


def w_rloo(rewards: Any, mask: Any, log_probs: Any, *, group: Any) -> Any:
    k = int((group == group[..., :1]).sum(-1).max())
    r = rewards.reshape((*rewards.shape[:-1], -1, k))
    base = (r.sum(-1, keepdims=True) - r) / (k - 1)
    return (r - base).reshape(rewards.shape)[..., None] * mask / k


def w_kl(rewards: Any, mask: Any, log_probs: Any, *, ref_log_probs: Any, kl_coef: float) -> Any:
    kl = ((log_probs - ref_log_probs) * mask).sum(-1)
    return (rewards - kl_coef * kl)[..., None] * mask / rewards.shape[-1]


@pytest.mark.parametrize("batched", [False, True])
def test_token_weights_verdicts(batched: bool) -> None:
    assert check_token_weights(w_reinforce, batched=batched, **SMALL).verdict == "unbiased"
    assert check_token_weights(w_token_mean, batched=batched, **SMALL).verdict == "biased"
    assert (
        check_token_weights(w_kl, batched=batched, **{**SMALL, "kl_coef": 0.3}).verdict
        == "unbiased"
    )


def test_token_weights_extras_by_name_and_multi_prompt() -> None:
    opts = {**SMALL, "num_prompts": (1, 2), "group_sizes": (2,)}
    # per-prompt group means summed over the prompts (divided by k): c = P against the mean
    report = check_token_weights(w_rloo, batched=True, **opts)
    assert report.verdict == "scaled"
    assert report.scale is not None and all(
        abs(c - key[2]) < 1e-9 for key, c in report.scale.items()
    )

    def w_rloo_batch_mean(rewards: Any, mask: Any, log_probs: Any, *, group: Any) -> Any:
        return w_rloo(rewards, mask, log_probs, group=group) / (group.max() + 1)

    # a mean over the P*k rows: the prompts' mean, unbiased
    assert check_token_weights(w_rloo_batch_mean, batched=True, **opts).verdict == "unbiased"


def test_token_weights_float32_output_is_tolerated() -> None:
    def w32(rewards: Any, mask: Any, log_probs: Any) -> Any:
        return w_reinforce(rewards, mask, log_probs).astype(np.float32)

    assert check_token_weights(w32, batched=True, **SMALL).verdict == "unbiased"


WEIGHT_ERRORS = [
    ("wrong-shape", lambda r, m, lp: r, "shape"),
    ("returned-none", lambda r, m, lp: None, "None"),
    ("bad-type", lambda r, m, lp: "weights", "str"),
    ("non-finite", lambda r, m, lp: m * np.nan, "non-finite"),
    ("raised", lambda r, m, lp: r[99], "IndexError"),
    ("mutated-input", lambda r, m, lp: r.__isub__(1.0), "read-only"),
    ("printed", lambda r, m, lp: print(r) or m, "printed"),
]


@pytest.mark.parametrize(("kind", "fn", "text"), WEIGHT_ERRORS)
def test_token_weight_errors(kind: str, fn: Any, text: str) -> None:
    report = check_token_weights(fn, **SMALL)
    assert report.verdict == "error"
    assert isinstance(report.error, SequenceError) and report.error.kind == kind, report.message
    assert text in report.message
    assert report.message.startswith("Weight function ")


def test_token_weights_nondeterminism_is_an_error() -> None:
    def dropout(rewards: Any, mask: Any, log_probs: Any) -> Any:
        keep = np.random.default_rng().random(mask.shape) < 0.9  # unseeded: differs per call
        return w_reinforce(rewards, mask, log_probs) * keep

    report = check_token_weights(dropout, **SMALL)
    assert isinstance(report.error, SequenceError) and report.error.kind == "nondeterministic"


NONDETERMINISM_RUNS = 50
"""Independent runs of the dropout check below (about 0.01 s each)."""


def test_nondeterminism_is_found_in_every_run_not_most() -> None:
    """Random 10% token dropout on the smallest problems repeats itself by chance: with one
    recheck of the counterexample it was called "biased" in 27 of 300 runs (all 50 runs
    pass with probability 0.01); with 16 rechecks none of 4,000 runs were, and the model
    (a miss chance of at most 0.4 per recheck) puts a failure of this test near 50 * 0.4**16
    = 2e-5."""

    def dropout(rewards: Any, mask: Any, log_probs: Any) -> Any:
        keep = np.random.default_rng().random(mask.shape) < 0.9  # unseeded on purpose
        return w_reinforce(rewards, mask, log_probs) * keep

    kinds = [
        (r.error.kind if r.error is not None else r.verdict)
        for r in (check_token_weights(dropout, **SMALL) for _ in range(NONDETERMINISM_RUNS))
    ]
    assert kinds == ["nondeterministic"] * NONDETERMINISM_RUNS, kinds


def test_float32_inside_a_float64_result_is_named_and_rtol_accepts_it() -> None:
    def rloo32(rewards: Any, mask: Any, log_probs: Any) -> Any:
        r, m = rewards.astype(np.float32), mask.astype(np.float32)
        k = np.float32(rewards.shape[-1])
        base = (r.sum(-1, keepdims=True) - r) / (k - 1)
        return ((r - base)[..., None] * m / k).astype(np.float64)

    report = check_token_weights(rloo32, batched=True, **SMALL)
    assert report.verdict == "biased" and "Round-off?" in report.message
    cex = report.counterexample
    assert cex is not None and cex.roundoff is not None
    assert cex.roundoff.dtype == "float32" and cex.roundoff.verdict == "unbiased"
    assert (
        check_token_weights(rloo32, batched=True, rtol=cex.roundoff.rtol, **SMALL).verdict
        == "unbiased"
    )


def test_a_float64_loss_with_float32_advantages_is_strict_and_says_round_off() -> None:
    def rloo_float32_advantage(b: Any) -> Any:
        r = b.rewards.float().view(b.num_prompts, b.group_size)
        adv = (r - (r.sum(-1, keepdim=True) - r) / (b.group_size - 1)).reshape(-1)
        return -(adv.double() * seqsum(b)).mean()  # a float64 loss: float64's tolerance

    report = check_sequence_loss(rloo_float32_advantage, **SMALL)
    assert report.verdict == "biased"
    assert report.run is not None and "float32" in report.run.dtypes
    cex = report.counterexample
    assert cex is not None and cex.roundoff is not None and cex.roundoff.verdict == "unbiased"
    assert "the loss computes in float32" in report.message


def test_round_off_notes_are_honest() -> None:
    # a bias of 5e-7 of |grad J| is a few float32 ulps: the note may say so, but it must not
    # claim float32 arithmetic the loss does not do; a bias of O(1) gets no note at all
    tiny = check_sequence_loss(tiny_bias, **SMALL)
    assert tiny.verdict == "biased" and "the loss computes in float32" not in tiny.message
    big = check_sequence_loss(token_mean, **SMALL)
    assert big.counterexample is not None and big.counterexample.roundoff is None


def test_sequence_expectation_reproduces_the_exact_sum() -> None:
    theta = np.zeros((1, 2, 2))  # V = 2, T = 1: '<eos>' and 'a', probability 1/2 each
    e_loss, g = sequence_expectation(reinforce, theta=theta, rewards=[[0.0, 1.0]], k=2)
    _e_w, g2 = sequence_expectation(
        w_token_mean, theta=theta, rewards=[[0.0, 1.0]], k=2, protocol="token-weights"
    )
    assert np.allclose(e_loss, g, rtol=0, atol=1e-15) and np.allclose(g, g2, rtol=0, atol=0)
    assert g[0, 0].tolist() == [-0.25, 0.25]
    with pytest.raises(InvalidArgument, match="misbehaved"):
        sequence_expectation(lambda b: None, theta=theta, rewards=[[0.0, 1.0]], k=2)


def test_the_reproduce_line_reproduces_the_counterexample() -> None:
    report = check_sequence_loss(token_mean, **{**SMALL, "kl_coef": 0.3, "off_policy": True})
    cex = report.counterexample
    assert isinstance(cex, SequenceCounterexample)
    line = next(x for x in report.message.splitlines() if "E, G = sequence_expectation(" in x)
    scope: dict[str, Any] = {
        "np": np,
        "sequence_expectation": sequence_expectation,
        "fn": token_mean,
    }
    exec(line.strip(), scope)  # the literal call printed in the report
    assert np.allclose(scope["E"].ravel(), cex.expectation, rtol=1e-12, atol=1e-15)
    assert np.allclose(scope["G"].ravel(), cex.gradient, rtol=1e-12, atol=1e-15)


def test_report_json_round_trip() -> None:
    report = check_sequence_loss(token_mean, **SMALL)
    data = json.loads(report.to_json())
    assert data["verdict"] == "biased" and data["protocol"] == "sequence-loss"
    assert data["counterexample"]["shape"]["max_len"] >= 2
    assert data["counterexample"]["length_pair"]
    assert data["run"]["mode"] == "vmap"
    assert data["settings"]["group_sizes"] == [2, 3]


# --------------------------------------------------------------------------- a loose user rtol


def test_a_loose_rtol_is_blamed_not_the_dtype_and_the_suggested_rtol_judges() -> None:
    """A float64 RLOO loss at rtol=1e-2 used to read "ERROR (imprecise): it no problem measured
    the scale ... (round-off unit 2.2e-16)" with the hint "compute the loss in float64 (or
    float32), not half precision": the loss is float64, the rtol was too loose."""
    report = check_sequence_loss(rloo, rtol=1e-2, **SMALL)
    assert report.error is not None and report.error.kind == "imprecise"
    assert "rtol=0.01" in report.error.detail and "half precision" not in report.error.hint
    assert " it no problem" not in report.message and "it could not be judged" in report.message
    suggested = float(report.error.hint.split("rtol=")[1].split()[0])
    assert check_sequence_loss(rloo, rtol=suggested, **SMALL).verdict == "unbiased"
    assert check_sequence_loss(group_mean, rtol=suggested, **SMALL).verdict == "scaled"


# --------------------------------------------------------------------------- a float32 constant in a float64 loss


def float32_third(b: Any) -> Any:
    """A float64 mean whose 1/B is a float32 constant: at B = 3, c = 1 + 2.98e-8."""
    per = b.rewards * seqsum(b)
    return -(per.sum() * float(np.float32(1.0 / per.shape[0])))


def test_a_float32_constant_in_a_float64_loss_is_noted_and_the_verdict_stays() -> None:
    """It used to be SCALED with c = 1.0000000298 at k=3 and no note."""
    report = check_sequence_loss(float32_third, **SMALL)
    assert report.verdict == "scaled"
    note = report.scale_note
    assert note is not None and note.dtype == "float32" and note.verdict == "unbiased"
    assert set(note.values.values()) == {"1"}
    assert "float32 constant or step inside the loss" in report.message
    assert json.loads(report.to_json())["scale_note"]["verdict"] == "unbiased"
    again = check_sequence_loss(float32_third, rtol=note.rtol, atol=note.atol, **SMALL)
    assert again.verdict == "unbiased"


@pytest.mark.parametrize("loss", [group_mean, lambda b: reinforce(b) * (1 + 1e-6)])
def test_scales_that_are_no_float32_rounding_get_no_note(loss: Any) -> None:
    report = check_sequence_loss(loss, **SMALL)
    assert report.verdict == "scaled" and report.scale_note is None
    assert "constant or step" not in report.message


# --------------------------------------------------------------------------- the sequence JSON's fields


def test_sequence_json_names_its_fields_for_a_sequence_problem() -> None:
    """It used to carry the one-step fields: ``counterexample.logits`` (the flattened theta)
    next to ``"n": 2``, ``error.samples`` and ``"batched": true`` for a torch loss."""
    data = json.loads(check_sequence_loss(token_mean, **SMALL).to_json())
    assert "batched" not in data
    cex = data["counterexample"]
    for one_step in ("logits", "scores", "n", "reference_logits", "reference_scores"):
        assert one_step not in cex
    size = np.asarray(cex["theta"]).size
    assert len(cex["reference_theta_flat"]) == len(cex["expectation"]) == size
    assert len(cex["reference_rewards_flat"]) == np.asarray(cex["rewards"]).size
    err = json.loads(check_sequence_loss(lambda b: 1 / 0, **SMALL).to_json())["error"]
    for one_step in ("logits", "samples", "rewards", "scores"):
        assert one_step not in err
    assert {"theta_flat", "reward_table_flat", "batch_responses", "batch_rewards"} <= set(err)
    assert len(err["batch_responses"]) == len(err["batch_rewards"]) == len(err["batch"])
    weights = json.loads(check_token_weights(w_reinforce, batched=True, **SMALL).to_json())
    assert weights["batched"] is True
