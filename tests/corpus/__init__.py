r"""A corpus of estimator code from public RL libraries, glued to :class:`SequenceBatch`.

Each :class:`CorpusEntry` names the library code it runs (repository, path, stored commit,
function names, licence), the glue that maps a batch onto that code's arguments
(:mod:`tests.corpus.glue`), the settings to check it with, the verdict it must get in the
setting of ``design/sequence.md`` and why.

Notation for the justifications: per prompt ``p`` a group of ``k`` i.i.d. responses
``y_1..y_k``; ``L_j`` the number of response tokens of ``y_j`` (EOS included; ``T`` if
truncated); ``S_j = grad log pi(y_j)`` (the sum of the token scores of ``y_j``, so
``E[S_j] = 0``); ``B = P k`` rows; the target is the prompts' mean,
``grad J = (1/P) sum_p grad J_p`` with ``grad J_p = E[(R - beta log(pi/pi_ref)) S]`` (a mean
over all ``B`` rows of per-row unbiased terms is unbiased; a sum over the prompts is ``P``
times it).  A baseline built from the *other* responses
of the group leaves ``E[(r_j - b) S_j] = grad J_p``; the plain group mean includes ``r_j``
itself and gives ``((k-1)/k) grad J_p``.

The library functions are re-expressed in ``_verl.py``, ``_trl.py``, ``_openrlhf.py``,
``_roll.py`` and ``_torchtune.py`` (same names, signatures, dtypes, constants and order of
operations; the text is not a copy).  Replacing one of them by the upstream function is a
drop-in change; see ``README.md``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the library corpus needs PyTorch: pip install '.[test]'")

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from . import glue

Verdict = Literal["unbiased", "scaled", "biased", "error"]


@dataclass(frozen=True)
class Source:
    """Where the library code comes from (a stored commit of a public repository)."""

    repo: str
    path: str
    commit: str
    symbols: tuple[str, ...]
    licence: str

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.path}"


@dataclass(frozen=True)
class Settings:
    """Keyword arguments of ``properties.check_sequence_loss`` for one entry."""

    group_sizes: tuple[int, ...] = (2, 3, 4)
    num_prompts: tuple[int, ...] = (1,)
    kl_coef: float = 0.0
    off_policy: bool = False
    vocab_size: int = 3
    max_len: int = 3

    def checker_kwargs(self) -> dict[str, Any]:
        return {
            "group_sizes": self.group_sizes, "num_prompts": self.num_prompts,
            "kl_coef": self.kl_coef, "off_policy": self.off_policy,
            "vocab_size": self.vocab_size, "max_len": self.max_len,
        }


@dataclass(frozen=True)
class CorpusEntry:
    """One piece of library code, its glue, and the verdict it must get."""

    name: str
    library: str
    sources: tuple[Source, ...]
    glue: Callable[..., Any]
    expected: Verdict
    justification: str
    settled_by: str
    settings: Settings = field(default_factory=Settings)
    scale: Callable[[int, int, int], float] | None = None  # c(k, T, P) for "scaled"
    float32_verdict: Verdict | None = None  # the verdict at float32 precision, if different
    references: tuple[str, ...] = ()


# --- sources -------------------------------------------------------------------------------

_APACHE = "Apache-2.0"
VERL_CORE = Source("volcengine/verl", "verl/trainer/ppo/core_algos.py",
                   "012be9d9dcb7c38499f23616142870d2682757fc",
                   ("compute_grpo_outcome_advantage", "compute_rloo_outcome_advantage",
                    "compute_reinforce_plus_plus_outcome_advantage",
                    "compute_reinforce_plus_plus_baseline_outcome_advantage",
                    "compute_remax_outcome_advantage", "compute_opo_outcome_advantage",
                    "compute_gpg_outcome_advantage", "agg_loss", "compute_policy_loss",
                    "compute_policy_loss_gspo", "compute_policy_loss_geo_mean",
                    "compute_entropy_loss", "kl_penalty"), _APACHE)
VERL_F = Source("volcengine/verl", "verl/utils/torch_functional.py",
                "03c8cca18c827405ad726f7f90b2e0c3823b7830",
                ("masked_mean", "masked_var", "masked_whiten", "entropy_from_logits"), _APACHE)
VERL_ACTOR = Source("volcengine/verl", "verl/workers/actor/dp_actor.py",
                    "0081137bacc08e1fe91b4d5632dccf0d7ad2b41b",
                    ("DataParallelPPOActor.update_policy",), _APACHE)
VERL_TRAINER = Source("volcengine/verl", "verl/trainer/ppo/ray_trainer.py",
                      "3d9df73353a546a98235b38653c2c163efb51420", ("apply_kl_penalty",), _APACHE)
TRL_GRPO = Source("huggingface/trl", "trl/trainer/grpo_trainer.py",
                  "d2b69d769dab6f77acbfd33252bcd7d22765571b",
                  ("GRPOTrainer._generate_and_score_completions", "GRPOTrainer._compute_loss"),
                  _APACHE)
TRL_RLOO = Source("huggingface/trl", "trl/trainer/rloo_trainer.py",
                  "00313f21920d37c3876c4021b51430224c06c936",
                  ("RLOOTrainer._generate_and_score_completions", "RLOOTrainer._compute_loss"),
                  _APACHE)
ORL_UTILS = Source("OpenRLHF/OpenRLHF", "openrlhf/models/utils.py",
                   "02a260574f3edbc8b4888c3d9a98fae20398d945",
                   ("compute_approx_kl", "compute_reward", "masked_mean"), _APACHE)
ORL_LOSS = Source("OpenRLHF/OpenRLHF", "openrlhf/models/loss.py",
                  "09f5acefb8968169b5f6013433b95b98f0db985c", ("PolicyLoss",), _APACHE)
ORL_MAKER = Source("OpenRLHF/OpenRLHF", "openrlhf/trainer/ppo_utils/experience_maker.py",
                   "01359b469bab646981001011e4b58109aeb789d5",
                   ("NaiveExperienceMaker.process_experiences",
                    "NaiveExperienceMaker.get_cumulative_returns"), _APACHE)
ORL_BUFFER = Source("OpenRLHF/OpenRLHF", "openrlhf/trainer/ppo_utils/replay_buffer.py",
                    "02fe837d811c1a7ba3a6691a52468f6f6486608e",
                    ("NaiveReplayBuffer.normalize",), _APACHE)
ROLL_F = Source("alibaba/ROLL", "roll/utils/functionals.py",
                "090ac94658ad14006ef7665aa922bf2668f5517c",
                ("reward_norm", "compute_reinforce_return", "agg_loss", "masked_sum",
                 "masked_mean"), _APACHE)
TT_LOSS = Source("pytorch/torchtune", "torchtune/dev/grpo/loss.py",
                 "b59a4807caffcbe03c48060ef9dc4f510f371d82",
                 ("GRPOSimpleLoss", "GRPOCompletionLoss", "GRPOWithChunkedOutputLoss"),
                 "BSD-3-Clause")
TT_RLHF = Source("pytorch/torchtune", "torchtune/rlhf/rewards.py",
                 "26ffccfbd4b742d7e582592446db95e2ddbe357c", ("masked_mean", "masked_sum"),
                 "BSD-3-Clause")

_VERL = (VERL_CORE, VERL_F, VERL_ACTOR)

# --- references ------------------------------------------------------------------------------

DR_GRPO = "Liu et al. 2025, Understanding R1-Zero-Like Training (Dr. GRPO), arXiv:2503.20783 s3.1"
KL_PITFALLS = ("Tang & Munos 2025, On a few pitfalls in KL divergence gradient estimation "
               "for RL, arXiv:2506.09477")
RLOO = ("Kool et al. 2019, Buy 4 REINFORCE samples, get a baseline for free!; Ahmadian et al. "
        "2024, Back to Basics, arXiv:2402.14740")
RPP = ("Hu et al. 2025, REINFORCE++ (global advantage normalization, 'effectively unbiased, "
       "bias vanishes as batch size increases'), arXiv:2501.03262")
VERL_957 = "https://github.com/verl-project/verl/issues/957 (loss_agg_mode semantics)"
VERL_742 = "https://github.com/verl-project/verl/issues/742 (Dr. GRPO in verl)"
VERL_2435 = "https://github.com/verl-project/verl/pull/2435 (length bias of masked_mean)"
VERL_2953 = "https://github.com/verl-project/verl/pull/2953 (k3 gives a biased KL gradient)"
OI_534 = "https://github.com/allenai/open-instruct/issues/534 (gradient of k3 is not unbiased)"
TRL_3256 = "https://github.com/huggingface/trl/pull/3256 (dr_grpo / bnpo loss types)"
TRL_3138 = "https://github.com/huggingface/trl/pull/3138 (length bias experiments)"
ROLL_444 = "https://github.com/alibaba/ROLL/pull/444 (token-mean numerator is unmasked)"
SKYRL_1445 = "https://github.com/NovaSky-AI/SkyRL/pull/1445 (k1 in reward or k2 in loss)"


def _c_dr_grpo_norm(k: int, t: int, p: int) -> float:
    return (k - 1) * p / t


def _c_group_mean(k: int, t: int, p: int) -> float:
    return (k - 1) / k


def _c_rloo_sum_norm(k: int, t: int, p: int) -> float:
    return k * p / t


def _c_trl_dr_grpo(k: int, t: int, p: int) -> float:
    return (k - 1) / (k * t)


def _c_roll_group_mean(k: int, t: int, p: int) -> float:
    return (k - 1) * p / (p * k + 1e-8)


def _c_roll_batch_mean(k: int, t: int, p: int) -> float:
    return (p * k - 1) / (p * k + 1e-8)


_P12 = Settings(num_prompts=(1, 2))
_KL = Settings(kl_coef=0.2)
_OFF = Settings(off_policy=True)

# --- the corpus ----------------------------------------------------------------------------

CORPUS: tuple[CorpusEntry, ...] = (
    # verl: advantages x aggregation
    CorpusEntry(
        "verl_grpo_token_mean", "verl", _VERL, glue.verl_grpo_token_mean, "biased",
        "GRPO advantage (r - mean)/(std + 1e-6) with verl's default token-mean: the std depends "
        "on the response's own reward (difficulty bias) and the batch token count on its "
        "length; E[g] is not proportional to grad J.",
        "literature (Dr. GRPO s3.1, both biases) + oracle", references=(DR_GRPO, VERL_957)),
    CorpusEntry(
        "verl_grpo_seq_mean_token_mean", "verl", _VERL, glue.verl_grpo_seq_mean_token_mean,
        "biased",
        "The original GRPO objective: std division and the per-response 1/L_j weight "
        "(response-level length bias): E[A_j S_j / L_j] is not c grad J since E[S/L] != 0.",
        "literature (Dr. GRPO s3.1) + oracle", references=(DR_GRPO, VERL_957)),
    CorpusEntry(
        "verl_drgrpo_seq_mean_token_sum_norm", "verl", _VERL,
        glue.verl_drgrpo_seq_mean_token_sum_norm, "scaled",
        "verl's Dr. GRPO: A_j = r_j - mean = ((k-1)/k)(r_j - mean of the others); the loss sums "
        "token sums over all rows and divides by the padded width T (a constant): "
        "E[g] = sum_p k ((k-1)/k) grad J_p / T = ((k-1) P/T) grad J (the sum over rows sums the "
        "prompts).  Dr. GRPO calls this 'unbiased' (true up to the constant).",
        "derivation (Dr. GRPO's estimator, constant made explicit) + oracle",
        settings=_P12, scale=_c_dr_grpo_norm, references=(DR_GRPO, VERL_742, VERL_2435)),
    CorpusEntry(
        "verl_grpo_nostd_seq_mean_token_sum", "verl", _VERL,
        glue.verl_grpo_nostd_seq_mean_token_sum, "scaled",
        "Group mean without std, per-response token sum, mean over the B = Pk rows: "
        "E[g] = (1/(Pk)) sum_p k ((k-1)/k) grad J_p = ((k-1)/k) grad J.",
        "derivation + oracle", settings=_P12, scale=_c_group_mean, references=(DR_GRPO,)),
    CorpusEntry(
        "verl_rloo_seq_mean_token_sum", "verl", _VERL, glue.verl_rloo_seq_mean_token_sum,
        "unbiased",
        "RLOO (r_j - mean of the other k-1), token sum per response, mean over k rows, one "
        "prompt; on-policy the PPO ratio is 1 with gradient grad log pi, the clip and the "
        "dual-clip (c = 3) do not bind and torch.maximum splits the gradient of equal branches "
        "evenly, so g = (1/k) sum_j A_j S_j and E[g] = grad J.",
        "literature (RLOO) + derivation + oracle", references=(RLOO,)),
    CorpusEntry(
        "verl_rloo_seq_mean_token_sum_p2", "verl", _VERL, glue.verl_rloo_seq_mean_token_sum,
        "unbiased",
        "The same code with two prompts per batch: seq-mean averages over the B = Pk rows, the "
        "mean over prompts of the group means, which is the objective's own mean over prompts: "
        "E[g] = grad J.",
        "derivation + oracle", settings=_P12),
    CorpusEntry(
        "verl_rloo_singleton_groups", "verl", _VERL, glue.verl_rloo_seq_mean_token_sum,
        "unbiased",
        "verl's RLOO leaves a score unchanged when its uid has a single response (n = 1), i.e. "
        "plain REINFORCE at k = 1, and is RLOO for k >= 2: unbiased at every k checked.",
        "derivation + oracle", settings=Settings(group_sizes=(1, 2, 3))),
    CorpusEntry(
        "verl_rloo_token_mean", "verl", _VERL, glue.verl_rloo_token_mean, "biased",
        "RLOO with token-mean: each token's weight is A_j / sum_i L_i, a batch-dependent "
        "normaliser correlated with y_j's own length (the 'token-level' loss of DAPO).",
        "literature (Dr. GRPO; verl #957) + oracle", references=(DR_GRPO, VERL_957)),
    CorpusEntry(
        "verl_rloo_seq_mean_token_sum_norm", "verl", _VERL,
        glue.verl_rloo_seq_mean_token_sum_norm, "scaled",
        "RLOO with seq-mean-token-sum-norm: sum_j A_j S_j / T, so E[g] = (kP/T) grad J (the "
        "mode sums over rows rather than averaging them).",
        "derivation + oracle", settings=_P12, scale=_c_rloo_sum_norm),
    CorpusEntry(
        "verl_rloo_float32_scores", "verl", _VERL, glue.verl_rloo_float32_scores, "biased",
        "verl's reward manager allocates token-level scores in float32; RLOO then runs in "
        "float32 and the float32 advantage multiplies a float64 ratio.  The algorithm is "
        "unbiased but E[g] differs from grad J by ~1e-8 relative: strictly biased, unbiased at "
        "float32 precision (issue 9: the verdict stays strict, the message must say round-off).",
        "derivation + oracle (residual ~2e-8)", float32_verdict="unbiased"),
    CorpusEntry(
        "verl_reinforce_pp", "verl", _VERL, glue.verl_reinforce_pp, "biased",
        "REINFORCE++ (gamma = 1): the return R_j on every token, whitened by the mean and std "
        "of all tokens of the batch (pooled over prompts, length-weighted, own reward "
        "included).  The paper calls global normalisation 'effectively unbiased' as the batch "
        "grows; at any finite batch it is biased.",
        "derivation + oracle (literature claims only asymptotic unbiasedness)",
        settings=_P12, references=(RPP,)),
    CorpusEntry(
        "verl_reinforce_pp_baseline", "verl", _VERL, glue.verl_reinforce_pp_baseline, "biased",
        "REINFORCE++-baseline: group mean subtracted (harmless, (k-1)/k), then whitened over "
        "every token of the batch: the std includes the own reward and the mean the own "
        "length.",
        "derivation + oracle", settings=_P12, references=(RPP,)),
    CorpusEntry(
        "verl_remax_greedy_baseline", "verl", _VERL, glue.verl_remax_greedy_baseline,
        "unbiased",
        "ReMax: A_t = R_j - R(greedy), the greedy response is a function of theta only (not of "
        "the samples), so the baseline is a constant for the expectation; token sum per "
        "response, mean over k rows, one prompt: E[g] = grad J.",
        "literature (ReMax) + derivation + oracle",
        references=("ReMax, arXiv:2310.10505 (cited by verl)",)),
    CorpusEntry(
        "verl_opo", "verl", _VERL, glue.verl_opo, "biased",
        "OPO's baseline sum_i L_i r_i / sum_i L_i includes the response's own reward and length, "
        "so E[(r_j - b) S_j] is not a constant multiple of grad J_p.",
        "derivation + oracle", references=("OPO, arXiv:2505.23585 (cited by verl)",)),
    CorpusEntry(
        "verl_gpg", "verl", _VERL, glue.verl_gpg, "biased",
        "GPG scales by alpha = B / count_nonzero(rewards): the count includes the response's "
        "own reward, so with exact-zero rewards (0/1 rewards are the RLVR norm) the weight of "
        "y_j depends on r_j; the count also pools prompts.  Only visible if the checker's "
        "reward tables contain exact zeros; otherwise alpha = 1 and the code is the scaled "
        "group mean.",
        "derivation + oracle (25% exact-zero rewards)", settings=_P12),
    CorpusEntry(
        "verl_ppo_dual_clip_off_policy", "verl", _VERL, glue.verl_ppo_dual_clip, "biased",
        "Off-policy the per-token ratio pi/pi_old corrects each token's sampling but not the "
        "prefix distribution, the clip (0.2) zeroes the gradient of tokens outside "
        "[0.8, 1.2] and the dual clip those with A < 0 and ratio > 3: E_old[g] != c grad J.",
        "derivation + oracle", settings=_OFF),
    CorpusEntry(
        "verl_gspo", "verl", _VERL, glue.verl_gspo, "biased",
        "GSPO's loss is aggregated seq-mean-token-mean whatever the configuration; on-policy "
        "the token ratios are 1 with gradient grad log pi, so g = (1/k) sum_j A_j S_j / L_j "
        "(response-level length weighting).",
        "derivation + oracle", references=("GSPO, arXiv:2507.18071 (cited by verl)",)),
    CorpusEntry(
        "verl_geo_mean", "verl", _VERL, glue.verl_geo_mean, "biased",
        "GMPO: ratio = exp(mean over tokens of the clipped log-ratio), so on-policy its "
        "gradient is S_j / L_j: the same 1/L_j weight as a per-response token mean.",
        "derivation + oracle", references=("GMPO, arXiv:2507.20673 (cited by verl)",)),
    # verl: KL and entropy
    CorpusEntry(
        "verl_kl_in_reward_k1", "verl", (*_VERL, VERL_TRAINER), glue.verl_kl_in_reward_k1,
        "unbiased",
        "use_kl_in_reward with k1: the token rewards sum to R_j - beta (log pi_old(y_j) - "
        "log pi_ref(y_j)), exactly the regularised return; with RLOO and a token sum "
        "E[g] = E[(R - beta log(pi/pi_ref)) S] = grad J (E[S] = 0 removes the term "
        "E[grad log pi]).",
        "literature (KL pitfalls: k1 in the reward is the correct gradient) + oracle",
        settings=_KL, references=(KL_PITFALLS, SKYRL_1445)),
    CorpusEntry(
        "verl_kl_in_reward_k3", "verl", (*_VERL, VERL_TRAINER), glue.verl_kl_in_reward_k3,
        "biased",
        "use_kl_in_reward with low_var_kl (k3): sum_t k3_t has the right mean per token but is "
        "not log pi(y) - log pi_ref(y) as a function of y, so the score-function term is wrong.",
        "literature (KL pitfalls) + oracle", settings=_KL, references=(KL_PITFALLS,)),
    CorpusEntry(
        "verl_kl_loss_k1", "verl", _VERL, glue.verl_kl_loss_k1, "biased",
        "use_kl_loss with k1: the loss adds beta * mean_j sum_t (log pi_t - log ref_t), whose "
        "gradient beta * mean_j S_j has expectation 0: the KL term of grad J is missing.",
        "literature (KL pitfalls s3) + oracle", settings=_KL, references=(KL_PITFALLS,)),
    CorpusEntry(
        "verl_kl_loss_k2", "verl", _VERL, glue.verl_kl_loss_k2, "biased",
        "use_kl_loss with mse (k2): gradient sum_t (log pi_t - log ref_t) grad log pi_t, the "
        "per-token ('partial') gradient; the sequence KL needs sum_t (sum_{s>=t} d_s) "
        "grad log pi_t.  Equal only when T = 1.",
        "literature (KL pitfalls s4, partial gradient) + oracle", settings=_KL,
        references=(KL_PITFALLS, SKYRL_1445)),
    CorpusEntry(
        "verl_kl_loss_k3", "verl", _VERL, glue.verl_kl_loss_k3, "biased",
        "use_kl_loss with low_var_kl (k3, GRPO's choice): gradient (1 - pi_ref/pi) grad log pi "
        "per token, whose expectation is the gradient of the forward KL(pi_ref || pi) per "
        "position, not of the reverse sequence KL; the clamps at 10 make it worse.",
        "literature (KL pitfalls; verl #2953; open-instruct #534) + oracle", settings=_KL,
        references=(KL_PITFALLS, VERL_2953, OI_534)),
    CorpusEntry(
        "verl_kl_loss_abs", "verl", _VERL, glue.verl_kl_loss_abs, "biased",
        "use_kl_loss with abs: gradient sign(d_t) grad log pi_t, unrelated to the KL gradient.",
        "derivation + oracle", settings=_KL),
    CorpusEntry(
        "verl_entropy_bonus", "verl", _VERL, glue.verl_entropy_bonus, "biased",
        "entropy_coeff = 0.01 subtracts an entropy term that the objective J does not contain: "
        "a different objective, hence biased for grad J.",
        "derivation + oracle"),
    # TRL
    CorpusEntry(
        "trl_grpo_default", "trl", (TRL_GRPO,), glue.trl_grpo_default, "biased",
        "scale_rewards=True divides by the group std (+1e-4) and loss_type='grpo' averages "
        "tokens per response: both GRPO biases.",
        "literature (Dr. GRPO) + oracle", references=(DR_GRPO, TRL_3138)),
    CorpusEntry(
        "trl_grpo_bnpo", "trl", (TRL_GRPO,), glue.trl_grpo_bnpo, "biased",
        "loss_type='bnpo' divides by the number of tokens in the batch, which depends on the "
        "sampled lengths (even without std scaling).",
        "literature (Dr. GRPO; TRL #3256) + oracle", references=(DR_GRPO, TRL_3256)),
    CorpusEntry(
        "trl_dr_grpo", "trl", (TRL_GRPO,), glue.trl_dr_grpo, "scaled",
        "scale_rewards=False and loss_type='dr_grpo': A_j = r_j - group mean, loss divided by "
        "B * max_completion_length = Pk T: E[g] = ((k-1)/(k T)) grad J for every P.",
        "literature (Dr. GRPO) + derivation of the constant + oracle", settings=_P12,
        scale=_c_trl_dr_grpo, references=(DR_GRPO, TRL_3256)),
    CorpusEntry(
        "trl_dr_grpo_beta_k3", "trl", (TRL_GRPO,), glue.trl_dr_grpo_beta_k3, "biased",
        "The scaled dr_grpo loss plus beta * per_token_kl (k3 in the loss) against the "
        "beta-regularised objective: the KL part of the gradient is the per-token forward-KL "
        "gradient, not the sequence reverse KL.",
        "literature (KL pitfalls) + oracle", settings=_KL, references=(KL_PITFALLS,)),
    CorpusEntry(
        "trl_gspo_sequence_dr_grpo", "trl", (TRL_GRPO,), glue.trl_gspo_sequence_dr_grpo,
        "scaled",
        "importance_sampling_level='sequence': the log-weight is the per-response mean of the "
        "token log-ratios (gradient S_j / L_j), broadcast over the L_j tokens that dr_grpo then "
        "sums: L_j * S_j / L_j = S_j, so E[g] = ((k-1)/(k T)) grad J, as plain dr_grpo.",
        "derivation + oracle", scale=_c_trl_dr_grpo),
    CorpusEntry(
        "trl_gspo_sequence_grpo", "trl", (TRL_GRPO,), glue.trl_gspo_sequence_grpo, "biased",
        "The same sequence-level weight with loss_type='grpo' (per-response token mean): the "
        "L_j copies are averaged, leaving S_j / L_j: length-weighted.",
        "derivation + oracle"),
    CorpusEntry(
        "trl_dr_grpo_off_policy", "trl", (TRL_GRPO,), glue.trl_dr_grpo_off_policy, "biased",
        "With stale samples TRL uses old_per_token_logps: a per-token clipped ratio, biased off "
        "policy for the same reasons as PPO.",
        "derivation + oracle", settings=_OFF),
    CorpusEntry(
        "trl_dr_grpo_float32_rewards", "trl", (TRL_GRPO,), glue.trl_dr_grpo_float32_rewards,
        "biased",
        "As trl_dr_grpo with the trainer's float32 rewards_per_func: the advantage is rounded "
        "to float32 (~1e-8 relative), so strictly biased, scaled at float32 precision.",
        "derivation + oracle (residual ~6e-9)", float32_verdict="scaled"),
    CorpusEntry(
        "trl_rloo_kl_in_reward", "trl", (TRL_RLOO,), glue.trl_rloo_kl_in_reward, "unbiased",
        "RLOOTrainer: reward R_j - beta sum_t (log pi_old - log ref) (k1 summed over the "
        "sequence, = the regularised return on-policy), leave-one-out baseline, sequence-level "
        "ratio exp(log pi(y) - log pi_old(y)) = 1 with gradient S_j, clip not binding, mean over "
        "the k rows: E[g] = grad J.",
        "literature (RLOO; KL pitfalls) + derivation + oracle", settings=_KL,
        references=(RLOO, KL_PITFALLS)),
    CorpusEntry(
        "trl_rloo_normalize_advantages", "trl", (TRL_RLOO,), glue.trl_rloo_normalize_advantages,
        "biased",
        "normalize_advantages=True whitens the RLOO advantages with the mean and std of the "
        "whole batch (+1e-4): the std contains the own reward, and it pools prompts.",
        "derivation + oracle", settings=_P12),
    CorpusEntry(
        "trl_rloo_off_policy", "trl", (TRL_RLOO,), glue.trl_rloo_off_policy, "biased",
        "Off-policy the sequence-level ratio pi(y)/pi_old(y) is the correct importance weight, "
        "but it is clipped to [0.8, 1.2] (zero gradient outside when the clip binds): biased. "
        "Without the clip it would be unbiased.",
        "derivation + oracle", settings=_OFF),
    # OpenRLHF
    CorpusEntry(
        "openrlhf_rloo_token_level", "openrlhf", (ORL_UTILS, ORL_LOSS, ORL_MAKER, ORL_BUFFER),
        glue.openrlhf_rloo_token_level, "biased",
        "rloo shaping is unbiased, but the replay buffer then whitens advantages over every "
        "action of the batch (float32) and PolicyLoss(token_level_loss=True) divides by the "
        "batch's token count.",
        "derivation + oracle", references=(RPP,)),
    CorpusEntry(
        "openrlhf_rloo_singleton_group", "openrlhf", (ORL_UTILS, ORL_LOSS, ORL_MAKER, ORL_BUFFER),
        glue.openrlhf_rloo_token_level, "error",
        "With n_samples_per_prompt = 1 the rloo shaping computes (sum - r) / (n - 1) = 0 / 0: "
        "every advantage and the loss are NaN.  An error takes precedence over 'biased'.",
        "derivation + oracle", settings=Settings(group_sizes=(1, 2, 3))),
    CorpusEntry(
        "openrlhf_reinforce_baseline", "openrlhf", (ORL_UTILS, ORL_LOSS, ORL_MAKER, ORL_BUFFER),
        glue.openrlhf_reinforce_baseline, "biased",
        "REINFORCE++-baseline: the comment says '/ std is not needed', yet the buffer "
        "normalisation divides by the global std of the advantages (own reward included, "
        "pooled over prompts), and the loss is a batch token mean.",
        "derivation + oracle", settings=_P12, references=(RPP,)),
    CorpusEntry(
        "openrlhf_group_norm_seq_level", "openrlhf", (ORL_UTILS, ORL_LOSS, ORL_MAKER),
        glue.openrlhf_group_norm_seq_level, "biased",
        "group_norm ((r - mean)/(std + 1e-9)) is exempt from buffer normalisation but divides "
        "by the group std; token_level_loss=False averages tokens per response.",
        "literature (Dr. GRPO) + oracle", references=(DR_GRPO,)),
    CorpusEntry(
        "openrlhf_kl_loss_k3", "openrlhf", (ORL_UTILS, ORL_LOSS, ORL_MAKER),
        glue.openrlhf_kl_loss_k3, "biased",
        "use_kl_loss with kl_estimator='k3' (computed after .float()): k3 in the loss, plus the "
        "group_norm and token-mean biases.",
        "literature (KL pitfalls) + oracle", settings=_KL, references=(KL_PITFALLS,)),
    # ROLL
    CorpusEntry(
        "roll_group_mean_seq_mean_token_sum", "roll", (ROLL_F,),
        glue.roll_group_mean_seq_mean_token_sum, "scaled",
        "Group-mean baseline ((k-1)/k) and seq-mean-token-sum dividing by "
        "global_valid_samples + 1e-8 = Pk + 1e-8: E[g] = ((k-1)P/(Pk + 1e-8)) grad J.  The "
        "epsilon moves c by ~1e-9 relative: visible to an exact checker.",
        "derivation + oracle (c matches to 1e-9, epsilon included)", settings=_P12,
        scale=_c_roll_group_mean),
    CorpusEntry(
        "roll_batch_mean_seq_mean_token_sum", "roll", (ROLL_F,),
        glue.roll_batch_mean_seq_mean_token_sum, "scaled",
        "A baseline pooled over the whole batch (norm_mean_type='batch', no std): "
        "A_j = r_j - (1/B) sum_i r_i; the other rows (same prompt or not) are independent of "
        "y_j, so E[A_j S_j] = (1 - 1/B) grad J_p(j) and E[g] = ((Pk-1)/(Pk + 1e-8)) grad J.  "
        "Pooling a mean across prompts only rescales.",
        "derivation + oracle", settings=_P12, scale=_c_roll_batch_mean),
    CorpusEntry(
        "roll_batch_mean_std", "roll", (ROLL_F,), glue.roll_batch_mean_std, "biased",
        "Batch mean and batch std (+1e-6): the std contains the own reward; pooling the std "
        "across prompts does not rescale, it biases.",
        "derivation + oracle", settings=_P12),
    # torchtune
    CorpusEntry(
        "torchtune_grpo_simple_loss", "torchtune", (TT_LOSS, TT_RLHF),
        glue.torchtune_grpo_simple_loss, "biased",
        "GRPOSimpleLoss (the recipes' default): std-normalised advantages (+1e-4) and a "
        "per-response masked token mean.",
        "literature (Dr. GRPO) + oracle", references=(DR_GRPO,)),
    CorpusEntry(
        "torchtune_grpo_completion_loss", "torchtune", (TT_LOSS, TT_RLHF),
        glue.torchtune_grpo_completion_loss, "biased",
        "GRPOCompletionLoss calls masked_sum(logprobs, padding_masks) without dim: one sum over "
        "the whole batch (its comments say [B x G]).  The ratio is then a single batch-wide "
        "number, the loss is -mean_j(A_j) * ratio and its gradient -mean_j(A_j) sum_i S_i; "
        "group-normalised advantages sum to zero, so g = 0 on every batch: E[g] = 0.",
        "derivation + oracle", references=("torchtune rlhf.masked_sum(dim=None)",)),
    CorpusEntry(
        "torchtune_grpo_chunked_output_loss", "torchtune", (TT_LOSS,),
        glue.torchtune_grpo_chunked_output_loss, "biased",
        "GRPOWithChunkedOutputLoss: log-probs from logits.float() and float32 accumulators "
        "(round-off), but first of all the GRPO std and per-response token mean.",
        "literature (Dr. GRPO) + oracle", references=(DR_GRPO,)),
)

LIBRARIES = tuple(sorted({e.library for e in CORPUS}))

__all__ = ["CORPUS", "LIBRARIES", "CorpusEntry", "Settings", "Source", "Verdict"]
