"""The diagnosis of sequence losses (issue 18, item 1): every cause of each biased or scaled entry.

``EXPECTED_CAUSES`` gives each biased and scaled loss entry of the sequence catalogue the causes
its derivation (the entry's docstring) names; the diagnosis must name exactly those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from impl.errors import InvalidArgument
from impl.sequence import response_space, sequence_gradient
from impl.sequence_catalogue import SEQUENCE_CATALOGUE, get
from properties.sequence.diagnosis import (
    Diagnosis,
    Finding,
    diagnose,
    per_node_kl_gradients,
    proportion,
)

torch = pytest.importorskip("torch")

EXPECTED_CAUSES: dict[str, frozenset[str]] = {
    # ---- scaled: the constant, factored over (k, T, P)
    "reinforce-sum-over-prompts": frozenset({"scale-prompts"}),
    "batch-mean-baseline": frozenset({"batch-self-baseline"}),
    "grpo-mean-only": frozenset({"self-baseline"}),
    "seq-mean-token-sum-norm": frozenset({"scale-max-len", "scale-prompts", "scale-group"}),
    # (k-1) P / T: a sum over all P k rows, a self-inclusive group mean, a division by T
    "dr-grpo-verl": frozenset({"scale-max-len", "scale-prompts", "scale-group", "self-baseline"}),
    "dr-grpo-trl": frozenset({"scale-max-len", "self-baseline"}),
    "kl-k1-in-reward-group-mean": frozenset({"self-baseline"}),
    # ---- biased
    "remax-teacher-forced-argmax-baseline": frozenset({"response-dependent"}),
    # the self-inclusive mean inside a normalised advantage is a constant, not a bias: not named
    "batch-whitening": frozenset({"reward-normalisation"}),
    "grpo-std": frozenset({"reward-normalisation"}),
    "dapo-filter-no-refill": frozenset({"pooling"}),
    "grpo-original": frozenset({"reward-normalisation", "length"}),
    "token-mean": frozenset({"length"}),
    "token-mean-multi-prompt": frozenset({"length"}),  # biased at P = 1 already: not pooling
    "seq-mean-token-mean": frozenset({"length"}),
    "reward-to-go-discounted": frozenset({"position"}),
    "returns-forward-cumsum": frozenset({"position"}),
    # tokens != pad drops EOS, and the mask it builds reads the padded tokens
    "mask-tokens-ne-pad": frozenset({"eos", "padding"}),
    "mask-counts-padding": frozenset({"padding"}),
    "logprobs-shifted-by-one": frozenset({"reads-logits"}),
    "ppo-clip-off-policy": frozenset({"off-policy-per-token", "off-policy-clipped"}),
    "ppo-ratio-old-not-detached": frozenset({"no-gradient"}),
    "gspo-sequence-ratio-on-policy": frozenset({"length"}),  # A S_j / L_j
    "tis-token-off-policy": frozenset({"off-policy-per-token", "off-policy-clipped"}),
    "sequence-is-truncated-off-policy": frozenset({"off-policy-clipped"}),  # min(sequence ratio, 2)
    "kl-k2-in-reward": frozenset({"kl-biased"}),
    "kl-k3-in-reward": frozenset({"kl-biased"}),
    "kl-k1-in-loss": frozenset({"kl-zero"}),
    "kl-k2-in-loss": frozenset({"kl-per-token"}),
    "kl-k3-in-loss": frozenset({"kl-forward"}),
    "entropy-bonus": frozenset({"extra-term"}),
    # ---- NumPy weight functions (protocol="token-weights")
    "w-grpo-std": frozenset({"reward-normalisation"}),
    "w-token-mean": frozenset({"length"}),
    "w-dr-grpo": frozenset({"scale-max-len", "scale-prompts", "scale-group", "self-baseline"}),
    # the padded-token probe is for losses only; weights on padding would show on the end node
    "w-mask-tokens-ne-pad": frozenset({"eos"}),
    "w-counts-padding": frozenset({"padding"}),
    "w-kl-k3-in-loss": frozenset({"kl-forward"}),
    "w-tis-token-off-policy": frozenset({"off-policy-per-token", "off-policy-clipped"}),
}
"""Every biased or scaled entry with the causes the diagnosis must name (none left out)."""

_UNMODELLED = {
    e.name
    for e in SEQUENCE_CATALOGUE
    if e.settings.tool_tokens or e.settings.sampling_mismatch or e.settings.values
}
"""Entries whose batch has what the diagnosis's probes do not model (tool tokens, a sampler, values)."""
_FLAGGED = [
    e.name
    for e in SEQUENCE_CATALOGUE
    if e.expected in ("biased", "scaled") and e.name not in _UNMODELLED
]
_UNBIASED = [
    e.name for e in SEQUENCE_CATALOGUE if e.expected == "unbiased" and e.name not in _UNMODELLED
]


@pytest.mark.parametrize("name", sorted(_UNMODELLED))
def test_diagnose_refuses_what_its_probes_do_not_model(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"(tool_tokens=True|sampling_mismatch=True|values='(random|exact)')"):
        _diagnose(name)


def _diagnose(name: str) -> Diagnosis:
    entry = get(name)
    if entry.protocol == "weights":
        kwargs = entry.settings.checker_kwargs("weights")
        batched = kwargs.pop("batched")
        return diagnose(entry.fn, kwargs, protocol="token-weights", batched=batched)
    return diagnose(entry.fn, entry.settings.checker_kwargs("loss"))


def test_the_table_covers_every_biased_and_scaled_loss_entry() -> None:
    assert sorted(EXPECTED_CAUSES) == sorted(_FLAGGED)


@pytest.mark.parametrize("name", _FLAGGED)
def test_diagnosis_names_exactly_the_expected_causes(name: str) -> None:
    d = _diagnose(name)
    assert not d.skipped
    assert len(set(d.names())) == len(d.names())
    assert set(d.names()) == EXPECTED_CAUSES[name], d.describe()
    for f in d.findings:
        assert f.sentence and all(np.isfinite(v) for v in f.evidence.values())


@pytest.mark.parametrize("name", _UNBIASED)
def test_an_unbiased_entry_has_no_cause(name: str) -> None:
    d = _diagnose(name)
    assert d.findings == () and d.skipped == ()


# --------------------------------------------------------------------------- the evidence


def test_per_response_token_mean_is_one_over_length() -> None:
    (f,) = _diagnose("seq-mean-token-mean").findings
    assert "1/|y|" in f.sentence
    assert f.evidence["c_len_2"] == pytest.approx(1 / 2, rel=1e-9)
    assert f.evidence["c_len_3"] == pytest.approx(1 / 3, rel=1e-9)


def test_batch_token_mean_decreases_with_length_but_is_not_one_over_length() -> None:
    (f,) = _diagnose("token-mean").findings
    assert "decreases" in f.sentence
    assert f.evidence["c_len_2"] > f.evidence["c_len_3"] > 0
    assert 2 * f.evidence["c_len_2"] != pytest.approx(3 * f.evidence["c_len_3"], rel=1e-3)


def test_the_constant_of_dr_grpo_verl_is_k_minus_one_times_p_over_t() -> None:
    d = _diagnose("dr-grpo-verl")
    ev = d.findings[0].evidence
    for key, value in ev.items():
        k, t, p = (int(part[1:]) for part in key.split("_")[1:])
        assert value == pytest.approx((k - 1) * p / t, rel=1e-9)


def test_k3_in_the_loss_is_the_per_node_forward_kl_with_coefficient_one() -> None:
    (f,) = _diagnose("kl-k3-in-loss").findings
    assert f.evidence["coefficient"] == pytest.approx(1.0, rel=1e-9)


def test_per_token_candidate_is_the_exact_kl_gradient_at_one_token() -> None:
    # T = 1: the sequence KL is the root's KL, so the per-node partial gradient is exact
    space = response_space(3, 1)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=space.theta_shape(1))
    ref = rng.normal(size=space.theta_shape(1))
    reach = np.ones((1, space.num_rows))
    exact = sequence_gradient(space, theta, np.zeros((1, space.num_responses)), kl_coef=1.0, ref_theta=ref)
    cand = per_node_kl_gradients(theta, ref, reach)["per-token"]
    np.testing.assert_allclose(cand, exact, atol=1e-12)


def test_proportion_of_a_zero_target() -> None:
    assert proportion(np.zeros(3), np.zeros(3)) == (0.0, 0.0)


# --------------------------------------------------------------------------- held out: combined causes


def test_std_normalisation_and_token_mean_are_both_named_at_once() -> None:
    def grpo_token_mean(batch: Any) -> Any:  # the example, written from scratch
        r = batch.rewards.view(-1, batch.group_size)
        adv = ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-4)).reshape(-1)
        return -(adv[:, None] * batch.log_probs * batch.mask).sum() / batch.mask.sum()

    assert set(diagnose(grpo_token_mean).names()) == {"reward-normalisation", "length"}


def test_eos_drop_and_std_normalisation_and_k3_are_named_together() -> None:
    def loss(batch: Any) -> Any:
        r = batch.rewards.view(-1, batch.group_size)
        adv = ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-4)).reshape(-1)
        mask = (batch.tokens != batch.pad_token_id).to(batch.log_probs.dtype)
        delta = batch.ref_log_probs - batch.log_probs
        k3 = (torch.exp(delta) - delta - 1) * batch.mask
        pg = -(adv[:, None] * batch.log_probs * mask).sum(-1).mean()
        return pg + batch.kl_coef * k3.sum(-1).mean()

    names = set(diagnose(loss, {"kl_coef": 0.1}).names())
    assert names == {"kl-forward", "eos", "padding", "reward-normalisation"}


def test_dropping_truncated_responses_is_named_truncation() -> None:
    def drop_truncated(batch: Any) -> Any:  # DAPO-style overlong filter: no gradient without EOS
        k = batch.group_size
        r = batch.rewards.view(-1, k)
        adv = (r - (r.sum(-1, keepdim=True) - r) / (k - 1)).reshape(-1)
        ended = ((batch.tokens == batch.eos_token_id) & (batch.mask > 0)).any(-1).to(adv.dtype)
        return -(adv * ended * (batch.log_probs * batch.mask).sum(-1)).mean()

    (f,) = diagnose(drop_truncated).findings
    assert f.name == "truncation"
    assert f.evidence["c_truncated"] == pytest.approx(0.0, abs=1e-12)
    assert f.evidence["c_eos_ended"] == pytest.approx(1.0, rel=1e-9)


def test_a_loss_reading_logits_gets_its_token_weights_through_log_probs() -> None:
    def token_mean_from_logits(batch: Any) -> Any:
        lp = torch.log_softmax(batch.logits, -1).gather(-1, batch.tokens[..., None]).squeeze(-1)
        return -(batch.rewards[:, None] * lp * batch.mask).sum() / batch.mask.sum()

    d = diagnose(token_mean_from_logits)
    assert d.names() == ("length",)
    assert "token weights, logits through log_probs" in d.probes


def test_float32_round_off_alone_is_named_low_precision() -> None:
    def rloo_float32(batch: Any) -> Any:
        k = batch.group_size
        r = batch.rewards.to(torch.float32).view(-1, k)
        adv = (r - (r.sum(-1, keepdim=True) - r) / (k - 1)).reshape(-1).to(batch.log_probs.dtype)
        return -(adv * (batch.log_probs * batch.mask).sum(-1)).mean()

    (f,) = diagnose(rloo_float32).findings
    assert f.name == "low-precision" and "float32" in f.sentence
    assert 1e-10 < f.evidence["relative_residual"] < 1e-6


def _rloo_advantage(batch: Any) -> Any:
    k = batch.group_size
    r = batch.rewards.view(-1, k)
    return (r - (r.sum(-1, keepdim=True) - r) / (k - 1)).reshape(-1)


def test_off_policy_without_any_ratio_is_named_no_ratio() -> None:
    def rloo_no_ratio(batch: Any) -> Any:
        return -(_rloo_advantage(batch) * (batch.log_probs * batch.mask).sum(-1)).mean()

    (f,) = diagnose(rloo_no_ratio, {"off_policy": True}).findings
    assert f.name == "off-policy-no-ratio" and f.evidence["baseline"] > 0


def test_an_unclipped_per_token_ratio_is_per_token_only() -> None:
    def per_token_is(batch: Any) -> Any:
        ratio = (batch.log_probs - batch.old_log_probs).exp().detach()
        return -(_rloo_advantage(batch)[:, None] * ratio * batch.log_probs * batch.mask).sum(-1).mean()

    assert diagnose(per_token_is, {"off_policy": True}).names() == ("off-policy-per-token",)


# --------------------------------------------------------------------------- arguments and hostile code


def test_a_report_gives_the_options() -> None:
    from properties.sequence.checker import check_sequence_loss

    entry = get("kl-k1-in-loss")
    report = check_sequence_loss(entry.fn, max_examples=0, **entry.settings.checker_kwargs("loss"))
    assert report.verdict == "biased"
    assert diagnose(entry.fn, report).names() == ("kl-zero",)


def test_a_scaled_report_without_counterexample_keeps_its_kl_coef() -> None:
    from properties.sequence.checker import check_sequence_loss

    entry = get("kl-k1-in-reward-group-mean")
    report = check_sequence_loss(entry.fn, max_examples=0, **entry.settings.checker_kwargs("loss"))
    assert report.verdict == "scaled" and report.counterexample is None
    d = diagnose(entry.fn, report)
    assert d.names() == ("self-baseline",)
    assert "kl part" in d.probes and "extra term" not in d.probes


@pytest.mark.parametrize(
    "args",
    [(3, None), (get("rloo").fn, 5), (get("rloo").fn, {"kl_coef": -1.0}), (get("rloo").fn, {"off_policy": 1}),
     (get("rloo").fn, {"num_prompts": 2}), (get("rloo").fn, {}, "weights"), (get("rloo").fn, {}, "token-weights", 1)],
)
def test_bad_arguments_raise_invalid_argument(args: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidArgument):
        diagnose(*args[:2], **dict(zip(("protocol", "batched"), args[2:], strict=False)))


def test_a_loss_that_raises_is_skipped_not_a_traceback() -> None:
    def broken(batch: Any) -> Any:
        raise RuntimeError("boom")

    d = diagnose(broken)
    assert d.findings == () and d.skipped and all("boom" in s or "misbehaved" in s for s in d.skipped)


def test_to_dict_and_describe() -> None:
    d = Diagnosis((Finding("eos", "EOS dropped.", {"x": 1.0}),), (), 0.5)
    assert d.to_dict() == {"findings": [{"name": "eos", "sentence": "EOS dropped.", "evidence": {"x": 1.0}}],
                           "skipped": [], "seconds": 0.5, "probes": []}
    assert Diagnosis(()).describe() == "no cause found"
