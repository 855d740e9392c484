"""Thin glue: one ``loss(batch: SequenceBatch) -> scalar`` per corpus entry.

Each function maps the protocol's batch onto the arguments the library's own code receives and
adds up the terms the way the library's trainer does.  What the glue decides (and nothing
else):

* **Rewards.** The batch's float64 ``rewards`` are handed over as the library's reward tensor;
  verl's reward manager puts a response's score on its last response token
  (``reward_tensor[i, valid_response_length - 1] = score``), and so does :func:`_last_token`.
  Where a trainer keeps rewards in float32 the ``*_float32`` entries reproduce that; the other
  entries keep float64 so that the algorithm, not the round-off, is judged.
* **Masks and groups.** ``response_mask`` / ``action_mask`` / ``completion_mask`` is
  ``batch.mask`` (TRL's GRPO derives its mask from the EOS token with the trainer's own rule);
  ``index`` / uid is ``batch.group``; rows are prompt-major, which is what TRL's
  ``view(-1, num_generations)`` and OpenRLHF's ``reshape(-1, n_samples_per_prompt)`` assume.
* **Old and reference log-probs.** ``batch.old_log_probs`` is what the library computed at
  generation time (``old_log_prob``, ``old_per_token_logps``, ``action_log_probs``);
  ``batch.ref_log_probs`` the reference model's.  TRL's GRPO passes ``None`` when generation
  and optimisation are aligned (then it uses ``per_token_logps.detach()``), as the trainer does.
* **Coefficients.** A KL coefficient is ``batch.kl_coef`` (the ``beta`` of the checked
  objective); clip ranges and other hyper-parameters are the libraries' defaults unless the
  entry says otherwise.
"""

from __future__ import annotations

import torch

from properties.sequence.batch import SequenceBatch

from . import _openrlhf as orl
from . import _roll as roll
from . import _torchtune as tt
from . import _trl as trl
from . import _verl as verl

# --- helpers -------------------------------------------------------------------------------


def _last_token(batch: SequenceBatch, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, T) tensor with ``values[b]`` on row b's last response token, zeros elsewhere."""
    out = torch.zeros(batch.tokens.shape, dtype=dtype)
    last = batch.mask.sum(-1).long() - 1
    out[torch.arange(out.shape[0]), last] = values.to(dtype)
    return out


def _uid(batch: SequenceBatch) -> list[int]:
    return [int(v) for v in batch.group.tolist()]


def _verl_actor_loss(batch: SequenceBatch, advantages: torch.Tensor, loss_agg_mode: str, *,
                     kl_loss_type: str | None = None, entropy_coeff: float = 0.0,
                     clip_ratio: float = 0.2) -> torch.Tensor:
    """``DataParallelPPOActor.update_policy`` for one micro-batch (gradient_accumulation = 1)."""
    pg_loss, _, _, _ = verl.compute_policy_loss(
        old_log_prob=batch.old_log_probs, log_prob=batch.log_probs, advantages=advantages,
        response_mask=batch.mask, cliprange=clip_ratio, cliprange_low=clip_ratio,
        cliprange_high=clip_ratio, clip_ratio_c=3.0, loss_agg_mode=loss_agg_mode)
    policy_loss = pg_loss
    if entropy_coeff != 0:
        entropy = verl.entropy_from_logits(batch.logits)
        entropy_loss = verl.agg_loss(loss_mat=entropy, loss_mask=batch.mask,
                                     loss_agg_mode=loss_agg_mode)
        policy_loss = pg_loss - entropy_loss * entropy_coeff
    if kl_loss_type is not None:
        kld = verl.kl_penalty(logprob=batch.log_probs, ref_logprob=batch.ref_log_probs,
                              kl_penalty=kl_loss_type)
        kl_loss = verl.agg_loss(loss_mat=kld, loss_mask=batch.mask, loss_agg_mode=loss_agg_mode)
        policy_loss = policy_loss + kl_loss * batch.kl_coef
    return policy_loss


def _verl_scores(batch: SequenceBatch, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return _last_token(batch, batch.rewards, dtype)


def _verl_grpo(batch: SequenceBatch, loss_agg_mode: str, *, norm_by_std: bool) -> torch.Tensor:
    adv, _ = verl.compute_grpo_outcome_advantage(
        token_level_rewards=_verl_scores(batch), response_mask=batch.mask, index=_uid(batch),
        norm_adv_by_std_in_grpo=norm_by_std)
    return _verl_actor_loss(batch, adv, loss_agg_mode)


def _verl_rloo_adv(batch: SequenceBatch, scores: torch.Tensor) -> torch.Tensor:
    adv, _ = verl.compute_rloo_outcome_advantage(
        token_level_rewards=scores, response_mask=batch.mask, index=_uid(batch))
    return adv


# --- verl ----------------------------------------------------------------------------------


def verl_grpo_token_mean(batch: SequenceBatch) -> torch.Tensor:
    """verl's defaults: GRPO advantage (std-normalised) and ``token-mean`` aggregation."""
    return _verl_grpo(batch, "token-mean", norm_by_std=True)


def verl_grpo_seq_mean_token_mean(batch: SequenceBatch) -> torch.Tensor:
    """The original GRPO objective: std-normalised advantage, per-response token mean."""
    return _verl_grpo(batch, "seq-mean-token-mean", norm_by_std=True)


def verl_drgrpo_seq_mean_token_sum_norm(batch: SequenceBatch) -> torch.Tensor:
    """verl's Dr. GRPO recipe: no std division, token sum over the constant padded width."""
    return _verl_grpo(batch, "seq-mean-token-sum-norm", norm_by_std=False)


def verl_grpo_nostd_seq_mean_token_sum(batch: SequenceBatch) -> torch.Tensor:
    """Group mean without std division, per-response token sum, mean over responses."""
    return _verl_grpo(batch, "seq-mean-token-sum", norm_by_std=False)


def verl_rloo_seq_mean_token_sum(batch: SequenceBatch) -> torch.Tensor:
    """RLOO advantage, per-response token sum, mean over responses."""
    return _verl_actor_loss(batch, _verl_rloo_adv(batch, _verl_scores(batch)), "seq-mean-token-sum")


def verl_rloo_token_mean(batch: SequenceBatch) -> torch.Tensor:
    """RLOO advantage with verl's default ``token-mean`` aggregation."""
    return _verl_actor_loss(batch, _verl_rloo_adv(batch, _verl_scores(batch)), "token-mean")


def verl_rloo_seq_mean_token_sum_norm(batch: SequenceBatch) -> torch.Tensor:
    """RLOO advantage, token sums over the constant padded width (summed over responses)."""
    return _verl_actor_loss(batch, _verl_rloo_adv(batch, _verl_scores(batch)),
                            "seq-mean-token-sum-norm")


def verl_rloo_float32_scores(batch: SequenceBatch) -> torch.Tensor:
    """As ``verl_rloo_seq_mean_token_sum`` with the reward manager's float32 score tensor."""
    scores = _verl_scores(batch, torch.float32)
    return _verl_actor_loss(batch, _verl_rloo_adv(batch, scores), "seq-mean-token-sum")


def verl_reinforce_pp(batch: SequenceBatch) -> torch.Tensor:
    """REINFORCE++ (gamma = 1): return-to-go whitened over the whole batch."""
    adv, _ = verl.compute_reinforce_plus_plus_outcome_advantage(
        token_level_rewards=_verl_scores(batch), response_mask=batch.mask,
        config=verl.AlgoConfig(gamma=1.0))
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum")


def verl_reinforce_pp_baseline(batch: SequenceBatch) -> torch.Tensor:
    """REINFORCE++-baseline: group mean subtracted, then whitened over the whole batch."""
    adv, _ = verl.compute_reinforce_plus_plus_baseline_outcome_advantage(
        token_level_rewards=_verl_scores(batch), response_mask=batch.mask, index=_uid(batch))
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum")


def verl_remax_greedy_baseline(batch: SequenceBatch) -> torch.Tensor:
    """ReMax: the baseline is the reward of each prompt's greedy response (scored by the
    reward function, repeated per row, as the trainer does)."""
    greedy = batch.greedy_tokens[batch.group]
    baselines = torch.as_tensor(batch.reward_fn(greedy, batch.group), dtype=torch.float64)
    adv, _ = verl.compute_remax_outcome_advantage(
        token_level_rewards=_verl_scores(batch), reward_baselines=baselines,
        response_mask=batch.mask)
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum")


def verl_opo(batch: SequenceBatch) -> torch.Tensor:
    """OPO: length-weighted group-mean baseline (own response included)."""
    adv, _ = verl.compute_opo_outcome_advantage(
        token_level_rewards=_verl_scores(batch), response_mask=batch.mask, index=_uid(batch))
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum")


def verl_gpg(batch: SequenceBatch) -> torch.Tensor:
    """GPG advantage (``alpha = bsz / count_nonzero(scores)``) with verl's ``gpg`` policy loss
    (``-log_prob * advantages``), aggregated per-response token sum."""
    adv, _ = verl.compute_gpg_outcome_advantage(
        token_level_rewards=_verl_scores(batch), response_mask=batch.mask, index=_uid(batch))
    return verl.agg_loss(loss_mat=-batch.log_probs * adv, loss_mask=batch.mask,
                         loss_agg_mode="seq-mean-token-sum")


def verl_ppo_dual_clip(batch: SequenceBatch) -> torch.Tensor:
    """RLOO + PPO clip (0.2) with dual-clip (c = 3), per-response token sum."""
    return _verl_actor_loss(batch, _verl_rloo_adv(batch, _verl_scores(batch)), "seq-mean-token-sum")


def verl_gspo(batch: SequenceBatch) -> torch.Tensor:
    """RLOO advantage with verl's GSPO policy loss (which forces seq-mean-token-mean)."""
    adv = _verl_rloo_adv(batch, _verl_scores(batch))
    loss, _, _, _ = verl.compute_policy_loss_gspo(
        old_log_prob=batch.old_log_probs, log_prob=batch.log_probs, advantages=adv,
        response_mask=batch.mask, loss_agg_mode="seq-mean-token-mean",
        config=verl.ActorConfig(clip_ratio=0.2, clip_ratio_low=3e-4, clip_ratio_high=4e-4))
    return loss


def verl_geo_mean(batch: SequenceBatch) -> torch.Tensor:
    """RLOO advantage with verl's GMPO (geometric-mean) policy loss."""
    adv = _verl_rloo_adv(batch, _verl_scores(batch))
    loss, _, _, _ = verl.compute_policy_loss_geo_mean(
        old_log_prob=batch.old_log_probs, log_prob=batch.log_probs, advantages=adv,
        response_mask=batch.mask, config=verl.ActorConfig(clip_ratio=0.4))
    return loss


def _verl_kl_in_reward(batch: SequenceBatch, kl_type: str) -> torch.Tensor:
    data = verl.DataProto(batch={
        "response_mask": batch.mask, "token_level_scores": _verl_scores(batch),
        "old_log_probs": batch.old_log_probs, "ref_log_prob": batch.ref_log_probs})
    data, _ = verl.apply_kl_penalty(data, verl.FixedKLController(batch.kl_coef), kl_type)
    adv = _verl_rloo_adv(batch, data.batch["token_level_rewards"])
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum")


def verl_kl_in_reward_k1(batch: SequenceBatch) -> torch.Tensor:
    """``use_kl_in_reward`` with ``kl_penalty="kl"`` (k1), RLOO, per-response token sum."""
    return _verl_kl_in_reward(batch, "kl")


def verl_kl_in_reward_k3(batch: SequenceBatch) -> torch.Tensor:
    """``use_kl_in_reward`` with ``kl_penalty="low_var_kl"`` (k3), RLOO, token sum."""
    return _verl_kl_in_reward(batch, "low_var_kl")


def _verl_kl_loss(batch: SequenceBatch, kl_type: str) -> torch.Tensor:
    adv = _verl_rloo_adv(batch, _verl_scores(batch))
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum", kl_loss_type=kl_type)


def verl_kl_loss_k1(batch: SequenceBatch) -> torch.Tensor:
    """``use_kl_loss`` with ``kl_loss_type="kl"`` (k1) added to an unbiased policy loss."""
    return _verl_kl_loss(batch, "kl")


def verl_kl_loss_k2(batch: SequenceBatch) -> torch.Tensor:
    """``use_kl_loss`` with ``kl_loss_type="mse"`` (k2)."""
    return _verl_kl_loss(batch, "mse")


def verl_kl_loss_k3(batch: SequenceBatch) -> torch.Tensor:
    """``use_kl_loss`` with ``kl_loss_type="low_var_kl"`` (k3, GRPO's choice)."""
    return _verl_kl_loss(batch, "low_var_kl")


def verl_kl_loss_abs(batch: SequenceBatch) -> torch.Tensor:
    """``use_kl_loss`` with ``kl_loss_type="abs"``."""
    return _verl_kl_loss(batch, "abs")


def verl_entropy_bonus(batch: SequenceBatch) -> torch.Tensor:
    """An unbiased policy loss minus ``entropy_coeff = 0.01`` times the entropy loss."""
    adv = _verl_rloo_adv(batch, _verl_scores(batch))
    return _verl_actor_loss(batch, adv, "seq-mean-token-sum", entropy_coeff=0.01)


# --- TRL -----------------------------------------------------------------------------------


def _trl_grpo(batch: SequenceBatch, *, scale_rewards: bool, loss_type: str, beta: float = 0.0,
              importance_sampling_level: str = "token", pass_old: bool = False,
              float32_rewards: bool = False) -> torch.Tensor:
    completion_mask = trl.grpo_completion_mask(batch.tokens, batch.eos_token_id)
    rewards = trl.grpo_rewards_per_func(batch.rewards) if float32_rewards else batch.rewards
    advantages = trl.grpo_advantages(rewards, batch.group_size, scale_rewards)
    return trl.grpo_compute_loss(
        batch.log_probs, advantages, completion_mask,
        old_per_token_logps=batch.old_log_probs if pass_old else None,
        ref_per_token_logps=batch.ref_log_probs, beta=beta, loss_type=loss_type,
        importance_sampling_level=importance_sampling_level,
        max_completion_length=batch.max_len)


def trl_grpo_default(batch: SequenceBatch) -> torch.Tensor:
    """``scale_rewards=True``, ``loss_type="grpo"``, ``beta=0``."""
    return _trl_grpo(batch, scale_rewards=True, loss_type="grpo")


def trl_grpo_bnpo(batch: SequenceBatch) -> torch.Tensor:
    """``scale_rewards=False``, ``loss_type="bnpo"`` (token mean over the batch)."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="bnpo")


def trl_dr_grpo(batch: SequenceBatch) -> torch.Tensor:
    """``scale_rewards=False``, ``loss_type="dr_grpo"`` (divide by B * max_completion_length)."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="dr_grpo")


def trl_dr_grpo_beta_k3(batch: SequenceBatch) -> torch.Tensor:
    """As ``trl_dr_grpo`` plus ``beta * per_token_kl`` (k3 in the loss), ``beta = kl_coef``."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="dr_grpo", beta=batch.kl_coef)


def trl_gspo_sequence_dr_grpo(batch: SequenceBatch) -> torch.Tensor:
    """``importance_sampling_level="sequence"`` (GSPO) with ``loss_type="dr_grpo"``."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="dr_grpo",
                     importance_sampling_level="sequence")


def trl_gspo_sequence_grpo(batch: SequenceBatch) -> torch.Tensor:
    """``importance_sampling_level="sequence"`` (GSPO) with ``loss_type="grpo"``."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="grpo",
                     importance_sampling_level="sequence")


def trl_dr_grpo_off_policy(batch: SequenceBatch) -> torch.Tensor:
    """``dr_grpo`` when the samples are stale: ``old_per_token_logps`` from the sampler."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="dr_grpo", pass_old=True)


def trl_dr_grpo_float32_rewards(batch: SequenceBatch) -> torch.Tensor:
    """``trl_dr_grpo`` with the trainer's float32 ``rewards_per_func``."""
    return _trl_grpo(batch, scale_rewards=False, loss_type="dr_grpo", float32_rewards=True)


def _trl_rloo(batch: SequenceBatch, *, normalize: bool, beta: float) -> torch.Tensor:
    mask = batch.mask
    old = batch.old_log_probs
    advantages = trl.rloo_advantages(batch.rewards, old, batch.ref_log_probs, mask,
                                     num_generations=batch.group_size, beta=beta,
                                     normalize_advantages=normalize)
    old_logps = (old * mask).sum(1)
    return trl.rloo_compute_loss(batch.log_probs, old_logps, advantages, mask)


def trl_rloo_kl_in_reward(batch: SequenceBatch) -> torch.Tensor:
    """RLOOTrainer: ``beta = kl_coef`` (sequence k1 in the reward), no normalisation."""
    return _trl_rloo(batch, normalize=False, beta=batch.kl_coef)


def trl_rloo_normalize_advantages(batch: SequenceBatch) -> torch.Tensor:
    """RLOOTrainer with ``normalize_advantages=True`` (whitened over the whole batch)."""
    return _trl_rloo(batch, normalize=True, beta=batch.kl_coef)


def trl_rloo_off_policy(batch: SequenceBatch) -> torch.Tensor:
    """RLOOTrainer on stale samples: the clipped sequence-level ratio (epsilon 0.2)."""
    return _trl_rloo(batch, normalize=False, beta=batch.kl_coef)


# --- OpenRLHF ------------------------------------------------------------------------------


def _openrlhf_advantages(batch: SequenceBatch, estimator: str, *, global_norm: bool
                         ) -> torch.Tensor:
    mask = batch.mask
    shaped = orl.process_experience_rewards(batch.rewards, batch.group_size, estimator)
    kl = torch.zeros_like(batch.old_log_probs)  # no initial model / use_kl_loss: kl is zeros
    reward = orl.compute_reward(shaped, 0.0, kl, action_mask=mask)
    returns = orl.get_cumulative_returns(reward, mask, gamma=1.0)
    return orl.normalize_advantages(returns, mask) if global_norm else returns


def openrlhf_rloo_token_level(batch: SequenceBatch) -> torch.Tensor:
    """``advantage_estimator="rloo"``, replay-buffer normalisation, token-level PolicyLoss."""
    adv = _openrlhf_advantages(batch, "rloo", global_norm=True)
    loss, _ = orl.PolicyLoss(token_level_loss=True)(batch.log_probs, batch.old_log_probs, adv,
                                                    action_mask=batch.mask)
    return loss


def openrlhf_reinforce_baseline(batch: SequenceBatch) -> torch.Tensor:
    """``advantage_estimator="reinforce_baseline"`` (REINFORCE++-baseline), global whitening."""
    adv = _openrlhf_advantages(batch, "reinforce_baseline", global_norm=True)
    loss, _ = orl.PolicyLoss(token_level_loss=True)(batch.log_probs, batch.old_log_probs, adv,
                                                    action_mask=batch.mask)
    return loss


def openrlhf_group_norm_seq_level(batch: SequenceBatch) -> torch.Tensor:
    """``advantage_estimator="group_norm"`` (no buffer normalisation), sequence-level loss."""
    adv = _openrlhf_advantages(batch, "group_norm", global_norm=False)
    loss, _ = orl.PolicyLoss(token_level_loss=False)(batch.log_probs, batch.old_log_probs, adv,
                                                     action_mask=batch.mask)
    return loss


def openrlhf_kl_loss_k3(batch: SequenceBatch) -> torch.Tensor:
    """``group_norm`` + ``use_kl_loss`` with ``kl_estimator="k3"`` (``loss + kl_loss * kl_ctl``)."""
    adv = _openrlhf_advantages(batch, "group_norm", global_norm=False)
    actor_loss, _ = orl.PolicyLoss(token_level_loss=True)(batch.log_probs, batch.old_log_probs,
                                                          adv, action_mask=batch.mask)
    kl = orl.compute_approx_kl(batch.log_probs, batch.ref_log_probs, kl_estimator="k3")
    kl_loss = orl.masked_mean(kl, batch.mask)
    return actor_loss + kl_loss * batch.kl_coef


# --- ROLL ----------------------------------------------------------------------------------


def _roll(batch: SequenceBatch, *, norm_mean_type: str | None, norm_std_type: str | None,
          loss_agg_mode: str = "seq-mean-token-sum") -> torch.Tensor:
    response_level = roll.reward_norm(batch.rewards, n_sample=batch.group_size,
                                      norm_mean_type=norm_mean_type, norm_std_type=norm_std_type)
    token_level = _last_token(batch, response_level, torch.float64) * batch.mask
    advantages, _ = roll.compute_reinforce_return(token_level, gamma=1.0, lambd=1.0)
    return roll.actor_pg_loss(batch.log_probs, batch.old_log_probs, advantages, batch.mask,
                              loss_agg_mode=loss_agg_mode)


def roll_group_mean_seq_mean_token_sum(batch: SequenceBatch) -> torch.Tensor:
    """Group-mean baseline (no std), ``seq-mean-token-sum`` over ``B + 1e-8`` samples."""
    return _roll(batch, norm_mean_type="group", norm_std_type=None)


def roll_batch_mean_seq_mean_token_sum(batch: SequenceBatch) -> torch.Tensor:
    """Batch-mean baseline pooled over every prompt of the batch, no std."""
    return _roll(batch, norm_mean_type="batch", norm_std_type=None)


def roll_batch_mean_std(batch: SequenceBatch) -> torch.Tensor:
    """Batch mean and batch std (``+ 1e-6``), pooled over every prompt of the batch."""
    return _roll(batch, norm_mean_type="batch", norm_std_type="batch")


# --- torchtune -----------------------------------------------------------------------------


def torchtune_grpo_simple_loss(batch: SequenceBatch) -> torch.Tensor:
    """GRPOSimpleLoss (the recipes' default), recipe advantages, ``kl_coeff = kl_coef``."""
    adv = tt.grpo_group_advantages(batch.rewards, batch.group_size)
    (loss,) = tt.GRPOSimpleLoss(epsilon=0.1, kl_coeff=batch.kl_coef)(
        batch.old_log_probs, batch.log_probs, batch.ref_log_probs, adv, batch.mask.bool())
    return loss


def torchtune_grpo_completion_loss(batch: SequenceBatch) -> torch.Tensor:
    """GRPOCompletionLoss with the recipe advantages, ``kl_coeff = kl_coef``."""
    adv = tt.grpo_group_advantages(batch.rewards, batch.group_size)
    loss, _, _ = tt.GRPOCompletionLoss(epsilon=0.1, kl_coeff=batch.kl_coef)(
        batch.old_log_probs, batch.log_probs, batch.ref_log_probs, adv, batch.mask.bool())
    return loss


def torchtune_grpo_chunked_output_loss(batch: SequenceBatch) -> torch.Tensor:
    """GRPOWithChunkedOutputLoss: log-probs from ``logits.float()``, float32 accumulators."""
    adv = tt.grpo_group_advantages(batch.rewards, batch.group_size)
    (loss,) = tt.GRPOWithChunkedOutputLoss(kl_coeff=batch.kl_coef)(
        batch.logits, batch.tokens, batch.ref_log_probs, adv, batch.mask.bool())
    return loss
