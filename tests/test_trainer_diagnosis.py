"""The diagnosis of trainer losses (``diagnose(fn, kwargs, protocol="trainer")``): the causes of
trainer catalogue entries and of TRL's own ``_compute_loss`` are those of their sequence twins.

Each trainer entry whose cause its derivation names is diagnosed, and so is its twin written in
the sequence protocol (the sequence catalogue's entry, or a loss written here): both must name
exactly the expected causes.  The TRL tests build the audit's configurations
(:func:`properties.audit.trl.build`) and diagnose TRL's code itself.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from impl.errors import InvalidArgument
from impl.sequence_catalogue import get as sequence_entry
from impl.trainer_catalogue import _per_token_logps, group_mean_advantages
from impl.trainer_catalogue import get as trainer_entry
from properties.audit.cause import row_cause
from properties.sequence.diagnosis import PROBERS, diagnose
from properties.trainer.diagnosis import TrainerProber, as_sequence_loss, trainer_options

torch = pytest.importorskip("torch")

GRPO_STD_EPS = 1e-4
"""The ``eps`` of the group-std advantages below (TRL's and the sequence catalogue's ``grpo-std``)."""


# --------------------------------------------------------------------- losses written here


def group_std_advantages(inputs: dict[str, Any]) -> Any:
    """TRL's ``scale_rewards="group"``: ``(r - group mean) / (group std + 1e-4)`` (Bessel std)."""
    rewards, group = inputs["rewards"], inputs["group"]
    onehot = (group[:, None] == torch.arange(inputs["num_prompts"])[None, :]).to(rewards.dtype)
    count = onehot.sum(0)
    mean = (onehot.T @ rewards) / count
    var = (onehot.T @ (rewards - onehot @ mean) ** 2) / (count - 1)
    return (rewards - onehot @ mean) / (onehot @ var.sqrt() + GRPO_STD_EPS)


def reinforce_on_advantages(model: Any, inputs: dict[str, Any]) -> Any:
    """``-(A_j sum_t logp_jt)`` averaged over the step's rows (seq-mean-token-sum)."""
    logps, mask = _per_token_logps(model, inputs), inputs["completion_mask"]
    per_seq = (logps * mask).sum(-1)
    return -(inputs["advantages"] * per_seq).sum() / inputs["global_batch_size"] * inputs["dp_size"]


def per_response_token_mean(model: Any, inputs: dict[str, Any]) -> Any:
    """``-(A_j mean_t logp_jt)``: seq-mean-token-mean, TRL's ``loss_type="grpo"`` on-policy."""
    logps, mask = _per_token_logps(model, inputs), inputs["completion_mask"]
    per_seq = (logps * mask).sum(-1) / mask.sum(-1)
    return -(inputs["advantages"] * per_seq).sum() / inputs["global_batch_size"] * inputs["dp_size"]


def seq_per_response_token_mean(batch: Any) -> Any:
    """The sequence twin of :func:`per_response_token_mean` with group-mean advantages."""
    k = batch.group_size
    r = batch.rewards.reshape(-1, k)
    adv = (r - r.mean(-1, keepdim=True)).reshape(-1)
    per_seq = (batch.log_probs * batch.mask).sum(-1) / batch.mask.sum(-1)
    return -(adv * per_seq).mean()


def eos_dropped(model: Any, inputs: dict[str, Any]) -> Any:
    """The loss mask built as ``completion_ids != pad`` with ``pad == EOS``: the EOS token falls out."""
    logps = _per_token_logps(model, inputs)
    mask = (inputs["completion_ids"] != 0).to(logps.dtype)
    return -(inputs["rewards"] * (logps * mask).sum(-1)).sum() / inputs["global_batch_size"]


def entropy_bonus(model: Any, inputs: dict[str, Any]) -> Any:
    """REINFORCE minus 0.01 x the completion positions' entropy (reads the whole distribution)."""
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"].long()], dim=1)
    t = inputs["completion_ids"].size(1)
    logits = model(input_ids=input_ids, attention_mask=attn, logits_to_keep=t + 1).logits[:, :-1]
    logp_all = logits.log_softmax(-1)
    logps = logp_all.gather(-1, inputs["completion_ids"][..., None])[..., 0]
    mask = inputs["completion_mask"]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    per_seq = ((logps * inputs["rewards"][:, None] + 0.01 * entropy) * mask).sum(-1)
    return -per_seq.sum() / inputs["global_batch_size"]


# --------------------------------------------------------------------- catalogue entries and twins

DR_GRPO = frozenset({"scale-max-len", "self-baseline"})
"""TRL's dr_grpo: ``c = (k-1)/(kT)``, a division by ``max_len`` and a self-inclusive group mean."""

TWINS: dict[str, tuple[frozenset[str], str | None]] = {
    "trainer-reinforce": (frozenset(), "reinforce-seq-mean-token-sum"),
    "trainer-reinforce-micro-dp": (frozenset(), "reinforce-seq-mean-token-sum"),
    "trl-dr-grpo": (DR_GRPO, "dr-grpo-trl"),
    "trl-dr-grpo-accumulated": (DR_GRPO, "dr-grpo-trl"),
    "trl-dr-grpo-temperature": (DR_GRPO, "dr-grpo-trl"),
    # the prompt terms cancel under group-mean advantages: only the scale is left
    "prompt-tokens-in-mask-group-mean": (DR_GRPO, "dr-grpo-trl"),
    "trainer-kl-k1-in-reward": (frozenset(), "kl-k1-in-reward"),
    "trl-kl-k3-in-loss": (frozenset({"kl-forward"}), "kl-k3-in-loss"),
    # sum / num_items_in_batch over M = 2 micro-batches: the batch's token mean
    "token-mean-global-count": (frozenset({"length"}), "token-mean"),
}
"""Each trainer entry with the causes its derivation names and its sequence catalogue twin."""


def _trainer(name: str) -> Any:
    entry = trainer_entry(name)
    return diagnose(entry.fn, entry.settings.checker_kwargs(), protocol="trainer")


@pytest.mark.parametrize("name", sorted(TWINS))
def test_a_trainer_entry_has_the_causes_of_its_sequence_twin(name: str) -> None:
    expected, twin = TWINS[name]
    found = _trainer(name)
    assert frozenset(found.names()) == expected, (found.describe(), found.skipped)
    if twin is not None:
        entry = sequence_entry(twin)
        other = diagnose(entry.fn, entry.settings.checker_kwargs("loss"))
        assert frozenset(other.names()) == expected, other.describe()


def test_the_token_weight_probe_runs_on_a_split_step() -> None:
    """``M = 2``: the probes' groups are the smallest that split (``k = 3`` becomes 4), none skipped."""
    found = _trainer("token-mean-global-count")
    assert not found.skipped, found.skipped
    assert "scale k=2 T=2 P=1" in found.probes and "rewards" in found.probes
    assert any("re-expressed per row" in p for p in found.probes)


@pytest.mark.parametrize(
    ("trainer_fn", "kwargs", "twin", "expected"),
    [
        (reinforce_on_advantages, {"advantages": group_std_advantages}, "grpo-std",
         frozenset({"reward-normalisation"})),
        (per_response_token_mean, {"advantages": group_mean_advantages}, seq_per_response_token_mean,
         frozenset({"length"})),
        (eos_dropped, {}, "mask-tokens-ne-pad", frozenset({"eos", "padding"})),
    ],
    ids=["group-std", "per-response-token-mean", "eos-dropped"],
)
def test_a_trainer_loss_written_here_has_the_causes_of_its_twin(
    trainer_fn: Any, kwargs: dict[str, Any], twin: Any, expected: frozenset[str]
) -> None:
    found = diagnose(trainer_fn, kwargs, protocol="trainer")
    assert frozenset(found.names()) == expected, (found.describe(), found.skipped)
    if isinstance(twin, str):
        entry = sequence_entry(twin)
        other = diagnose(entry.fn, entry.settings.checker_kwargs("loss"))
    else:
        other = diagnose(twin)
    assert frozenset(other.names()) == expected, other.describe()


def test_a_loss_the_per_row_model_changes_lists_the_token_weight_probe_as_not_run() -> None:
    """An entropy bonus reads the whole distribution: routed through ``log_probs`` its E[g] changes,
    so the token-weight causes are said not to be looked for (nothing silent); the extra term is
    still named from E[g] alone."""
    found = diagnose(entropy_bonus, {}, protocol="trainer")
    assert "extra-term" in found.names(), found.describe()
    (skip,) = [s for s in found.skipped if "re-expressed per row" in s]
    assert "E[g] changed" in skip and "were not looked for" in skip


def test_the_per_row_re_expression_is_the_trainer_step_on_one_batch() -> None:
    """Row ``b``'s gradient lands on ``logits[b]``: the same as a plain sequence loss's."""
    fn = as_sequence_loss(reinforce_on_advantages, trainer_options({"advantages": group_mean_advantages}))
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(3, 3, 3)), requires_grad=True)
    tokens = torch.tensor([[1, 2, 0], [2, 0, 0], [1, 1, 2]])  # the last is truncated
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.float64)
    zero = torch.zeros(3, 3, dtype=torch.float64)
    rewards = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    batch = SimpleNamespace(
        tokens=tokens, mask=mask, logits=logits, max_len=3, vocab_size=3, rewards=rewards,
        old_log_probs=zero, ref_log_probs=zero, sampling_log_probs=zero, values=zero,
        group=torch.zeros(3, dtype=torch.int64), group_size=3, num_prompts=1, kl_coef=0.0,
    )
    (got,) = torch.autograd.grad(fn(batch), logits)
    lp = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    want = -((rewards - rewards.mean()) * (lp * mask).sum(-1)).sum() / 3
    (expected,) = torch.autograd.grad(want, logits)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_a_one_call_check_is_refused_with_the_reason() -> None:
    entry = trainer_entry("ga-token-mean-global-count")
    with pytest.raises(InvalidArgument, match=r"against grad J.*against='one-call'"):
        diagnose(entry.fn, entry.settings.checker_kwargs(), protocol="trainer")
    assert PROBERS["trainer"] is TrainerProber is PROBERS["trainer-loss"]


def test_the_audit_names_a_trainer_rows_cause() -> None:
    """:func:`row_cause` diagnoses a trainer result (``protocol == "trainer-loss"``) with the
    check's keywords; a one-call row keeps its symptom and says why."""
    result = SimpleNamespace(verdict="biased", protocol="trainer-loss", diagnosis=None)
    kwargs = {"advantages": group_std_advantages, "against": "objective"}
    found = row_cause(result, "E[g] is not 1 grad J", loss_fn=reinforce_on_advantages,
                      check_kwargs=kwargs, diagnose=True)
    assert found.cause == "std normalisation of the group's rewards", found
    one_call = row_cause(result, "E[g] is not 1 E[g] of one call", loss_fn=reinforce_on_advantages,
                         check_kwargs={**kwargs, "against": "one-call"}, diagnose=True)
    assert one_call.cause == "E[g] is not 1 E[g] of one call"
    assert one_call.detail.endswith("[not diagnosed: judged against one call, and the diagnosis names "
                                    "causes against grad J]"), one_call.detail


# --------------------------------------------------------------------- TRL's own code


TRL_CAUSES: dict[str, frozenset[str]] = {
    "scale:group": frozenset({"reward-normalisation"}),
    "loss:grpo": frozenset({"length"}),
    # TRL's fused head computes in float32: the constant, and the round-off said to be no cause
    "loss:dr_grpo": DR_GRPO | {"low-precision"},
    # use_bias_correction_kl (TRL's default) turns the k3 term's gradient into the per-token one
    "kl": DR_GRPO | {"kl-per-token"},
}
"""The causes of TRL rows: each TRL option's own, on the base (dr_grpo, no reward scaling)."""


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRL_CAUSES))
def test_trl_compute_loss_has_the_causes_of_its_option(name: str) -> None:
    pytest.importorskip("trl")
    from properties.audit import trl as audit_trl

    config = next(c for c in audit_trl.configurations() if c.name == name)
    fn, kwargs = audit_trl.build(config)
    assert kwargs.pop("checker") == "trainer"
    found = diagnose(fn, kwargs, protocol="trainer")
    assert frozenset(found.names()) == TRL_CAUSES[name], (found.describe(), found.skipped)
    assert not found.skipped
    if name == "loss:dr_grpo":  # a scale, and round-off far below the probes' tolerance
        (low,) = [f for f in found.findings if f.name == "low-precision"]
        assert 1e-10 < low.evidence["relative_residual"] < 1e-6


def test_a_trainer_report_is_diagnosed_with_its_own_settings() -> None:
    """The report's ``protocol`` (``"trainer-loss"``) and ``settings`` (here ``kl_coef``) are enough
    for a loss without an advantage function."""
    from properties.trainer.checker import check_trainer_loss

    entry = trainer_entry("trl-kl-k3-in-loss")
    report = check_trainer_loss(entry.fn, max_examples=0, **{**entry.settings.checker_kwargs(), "max_len": 2})
    assert report.verdict == "biased" and report.settings["kl_coef"] > 0
    assert diagnose(entry.fn, report, protocol=report.protocol).names() == ("kl-forward",)


@pytest.mark.slow
def test_the_trl_audit_row_gets_its_cause_and_keeps_its_symptom() -> None:
    """``run_configuration(..., diagnose=True)`` on a TRL row: the cause is the diagnosis's, the
    detail the checker's symptom."""
    pytest.importorskip("trl")
    from properties.audit import trl as audit_trl
    from properties.audit.core import run_configuration

    config = next(c for c in audit_trl.configurations() if c.name == "scale:group")
    row = run_configuration(config, audit_trl.version(), diagnose=True)
    assert row.verdict == "biased"
    # judged at TRL's declared float32 precision, which the row says first
    assert row.cause == "at float32 precision: std normalisation of the group's rewards", row
    assert row.detail.startswith("E[g] "), row.detail
