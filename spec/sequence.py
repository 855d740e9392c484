r"""The sequence-level score-function identities, for every vocabulary size and length cap.

The sequence checker (:mod:`properties.sequence.checker`) compares a loss's expected
gradient with the exact :math:`\nabla J` of :mod:`impl.sequence`, which rests on two
identities for the tabular autoregressive policy (a response ends at its first EOS or
after ``T`` tokens; every live prefix is a node with its own softmax):

* the **score-function identity** :math:`\nabla_\vartheta E_{y\sim\pi}[R(y)] =
  E_{y\sim\pi}[R(y)\,\nabla_\vartheta\log\pi(y)]`, proved by induction over the length cap
  ``T`` with a symbolic vocabulary ``V``: a response is its first token ``v`` followed by a
  response of the subtree below ``v`` (cap ``T - 1``; nothing after EOS or at the cap), so
  :math:`\pi(v\,y') = \pi(v)\,\pi^{(v)}(y')` and the identity for the subtrees gives it for
  the tree;
* the **KL gradient** :math:`\nabla\,\mathrm{KL}(\pi\|\pi_{\mathrm{ref}}) =
  E_\pi[(\log\pi - \log\pi_{\mathrm{ref}})\,\nabla\log\pi]` over any finite set of responses
  (the normalisation :math:`\sum_y \pi(y) = 1`, itself proved by the same induction, kills
  the second term),

and, for the tabular softmax, :math:`\partial\log\pi(y)/\partial\theta_{n,v} =
\sum_{t:\,\mathrm{node}_t = n} (\delta_{y_t v} - \pi(v\mid n))`.  Together:
:math:`\nabla J = E_\pi[(R - \beta(\log\pi - \log\pi_{\mathrm{ref}}))\nabla\log\pi]`, the
formula :func:`impl.sequence.sequence_gradient` evaluates.  Each proof also carries a
bounded cross-check: the identity for concrete ``(V, T)`` with symbolic logits and rewards,
differentiated directly.

The proofs take keyword-only candidates (the piece being proved); a wrong candidate must
make the proof fail, which is how the tests show that these proofs can fail.

>>> proof = prove_sequence_score_function(continuation_score=lambda dlp, dlq: dlp)
>>> proof.ok, [s.description.split(":")[0] for s in proof.failed][:1]
(False, ['autoregressive factorisation'])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType

import sympy
from sympy import (
    Derivative,
    Function,
    IndexedBase,
    KroneckerDelta,
    Sum,
    Symbol,
    diff,
    exp,
    log,
)

from spec._core import Expr, Proof, Step, chain, check_cases, check_identity, make_proof
from spec.symbols import N_COORD, i, m, n, softmax_p, theta, vartheta

V = Symbol("V", integer=True, positive=True)
"""The vocabulary size (general)."""

v = Symbol("v", integer=True, nonnegative=True)
"""The first token of a response, ``0 <= v < V`` (``0`` is EOS)."""

u = Symbol("u", integer=True, nonnegative=True)
"""A second token index."""

y = Symbol("y", integer=True, nonnegative=True)
"""A continuation (a response of the subtree below the first token)."""

M = IndexedBase("M", integer=True, positive=True)
"""``M[v]``: the number of continuations after first token ``v`` (1 for EOS or at the cap)."""

first = Function("pi")
r"""``pi(v, vartheta)``: the probability of first token ``v`` (the root's softmax)."""

sub = Function("pi_sub")
r"""``pi_sub(v, y, vartheta)``: the probability of continuation ``y`` in the subtree below ``v``."""

reward = Function("R")
"""``R(v, y)``: the reward of the response ``v`` followed by ``y``."""

sub_value = Function("E_sub")
r""":math:`E^{(v)}(\vartheta) = \sum_y \pi^{(v)}(y)\,R(v, y)`, the subtree's expected reward."""

sub_score = Function("G_sub")
r""":math:`G^{(v)}(\vartheta) = \sum_y \pi^{(v)}(y)\,R(v, y)\,\partial\log\pi^{(v)}(y)`."""

ref = IndexedBase("pi_ref", positive=True)
"""The reference policy's probabilities ``pi_ref[i]`` (independent of the parameters)."""

ContinuationScore = Callable[[Expr, Expr], Expr]
r"""``score(d log pi(v), d log pi_sub(y))``: the candidate :math:`\partial\log\pi(v\,y)` (default the sum)."""

KlWeight = Callable[[Expr, Expr], Expr]
r"""``weight(log pi(y), log pi_ref(y))``: the candidate weight of :math:`\nabla\log\pi` in the KL gradient."""


def _sum_score(dlp: Expr, dlq: Expr) -> Expr:
    return dlp + dlq


def _log_ratio(lp: Expr, lr: Expr) -> Expr:
    return lp - lr


# --------------------------------------------------------------------------- the steps


def _normalisation_steps() -> list[Step]:
    """sum_y pi(y) = 1 by induction over T: each subtree sums to 1, and the root's softmax does.

    The root's sum is derived from the softmax itself, not assumed.
    """
    z = Function("Z_sub")
    root_logits = IndexedBase("theta_root", real=True)
    softmax_root = exp(root_logits[v]) / Sum(exp(root_logits[v]), (v, 0, V - 1))
    return chain(
        [
            check_identity(
                "normalisation, induction step over T: sum_v pi(v) Z^(v) = sum_v pi(v) once every "
                "subtree sums to 1 (Z^(v) = 1: the induction hypothesis at cap T - 1, or a "
                "finished response)",
                Sum(first(v, vartheta) * z(v), (v, 0, V - 1)),
                Sum(first(v, vartheta), (v, 0, V - 1)),
                assume={z(v): 1},
            ),
            check_identity(
                "... = 1: the root's softmax pi(v) = e^theta_v / sum_u e^theta_u sums to 1 for "
                "every V (the base case T = 1 is this sum alone)",
                Sum(first(v, vartheta), (v, 0, V - 1)),
                1,
                given={first(v, vartheta): softmax_root},
            ),
        ]
    )


def _statement(
    policy: Callable[[Expr], Expr], value: Callable[[Expr], Expr], size: Expr
) -> tuple[Expr, Expr]:
    r"""The score-function identity for one (sub)tree: :math:`(\partial E[R], E[R\,\partial\log\pi])`.

    ``policy(y)`` and ``value(y)`` are the probability and reward of response ``y`` of the
    ``size`` responses.  The induction hypothesis is this statement at cap ``T - 1``; the
    proof applies it to each subtree by calling it with the subtree's policy and reward.
    """
    return (
        Derivative(Sum(policy(y) * value(y), (y, 0, size - 1)), vartheta),
        Sum(policy(y) * value(y) * diff(log(policy(y)), vartheta), (y, 0, size - 1)),
    )


def _score_induction_steps(continuation_score: ContinuationScore) -> list[Step]:
    p, q = first(v, vartheta), sub(v, y, vartheta)
    r = reward(v, y)
    dlp, dlq = diff(log(p), vartheta), diff(log(q), vartheta)
    e_sub, g_sub = sub_value(v, vartheta), sub_score(v, vartheta)
    inner_value = Sum(q * r, (y, 0, M[v] - 1))
    inner_score = Sum(q * r * dlq, (y, 0, M[v] - 1))
    # the hypothesis (cap T - 1) for the subtree below v: its policy, its rewards, its size
    inst_lhs, inst_rhs = _statement(lambda yy: sub(v, yy, vartheta), lambda yy: reward(v, yy), M[v])
    instance = check_identity(
        "subtree instance: the statement at cap T - 1 for the subtree below v (policy "
        "pi_sub(v, .), rewards R(v, .), M[v] continuations) says d E^(v) = G^(v), with "
        "E^(v) = sum_y pi_sub R and G^(v) = sum_y pi_sub R d log pi_sub",
        Derivative(e_sub, vartheta) - g_sub,
        inst_lhs - inst_rhs,
        given={e_sub: inner_value, g_sub: inner_score},
    )
    hypothesis = sympy.solve(instance.lhs, Derivative(e_sub, vartheta))
    if len(hypothesis) != 1:
        raise ValueError(
            f"the subtree instance {instance.lhs} = 0 does not give d E^(v): {hypothesis}"
        )
    finished_lhs, finished_rhs = _statement(
        lambda yy: sympy.Integer(1), lambda yy: reward(v, yy), 1
    )
    base_lhs, base_rhs = _statement(lambda vv: first(vv, vartheta), lambda vv: reward(vv, 0), V)
    split = check_identity(
        "E_T[R d log pi] splits by the first token (linearity of the finite sums over "
        "every V and every subtree size M[v])",
        Sum(Sum(p * q * r * continuation_score(dlp, dlq), (y, 0, M[v] - 1)), (v, 0, V - 1)),
        Sum(p * dlp * inner_value + p * inner_score, (v, 0, V - 1)),
    )
    named = check_identity(
        "= sum_v pi(v) (d log pi(v) E^(v) + G^(v)), naming the subtree's expected reward "
        "E^(v) and score term G^(v)",
        split.rhs,
        Sum(p * (dlp * e_sub + g_sub), (v, 0, V - 1)),
        given={e_sub: inner_value, g_sub: inner_score},
    )
    induction = check_identity(
        "induction step: = d sum_v pi(v) E^(v) = d E_T[R] (the product rule d(pi E) = "
        "pi d log pi E + pi d E, and the subtree instance d E^(v) = G^(v))",
        named.rhs,
        Derivative(Sum(p * e_sub, (v, 0, V - 1)), vartheta),
        doit=True,
        assume={Derivative(e_sub, vartheta): hypothesis[0]},
    )
    return [
        check_identity(
            "autoregressive factorisation: pi(v y) = pi(v) pi_sub(v, y), so "
            "d log pi(v y) = d log pi(v) + d log pi_sub(v, y)",
            diff(log(p * q), vartheta),
            continuation_score(dlp, dlq),
        ),
        check_identity(
            "a finished response (first token EOS, or the cap reached) is a subtree of one "
            "continuation of probability 1: the statement holds there (R does not depend on "
            "the parameters)",
            finished_lhs,
            finished_rhs,
            doit=True,
        ),
        check_identity(
            "base case T = 1 (every response is one token): the statement for the root's "
            "softmax and rewards R(v), for every V",
            base_lhs,
            base_rhs,
            doit=True,
        ),
        instance,
        *chain([split, named, induction]),
    ]


def _softmax_token_score_steps() -> list[Step]:
    phi = IndexedBase("phi", real=True)
    other = Sum(sympy.exp(phi[i]), (i, 0, n - 1))
    return [
        check_identity(
            "tabular softmax: d log pi(y_t | node) / d theta[node, m] = delta(y_t, m) - pi(m | node), "
            "for every V (one node's logits theta[0..V-1], V = m + r + 1)",
            diff(log(softmax_p(i)), theta[m]).doit(),
            KroneckerDelta(i, m) - softmax_p(m),
        ),
        check_identity(
            "a position at another node (logits phi) does not depend on theta[node, m]: "
            "so d log pi(y) / d theta[n, m] sums delta - pi over the positions at node n only",
            Derivative(log(sympy.exp(phi[i]) / other), theta[m]),
            0,
            doit=True,
        ),
    ]


def _kl_steps(weight: KlWeight) -> list[Step]:
    p = first(i, vartheta)
    norm = Sum(p, (i, 0, n - 1))
    return [
        check_identity(
            "d KL = sum_y d pi(y) (log pi(y) - log ref(y)) + sum_y pi(y) d log pi(y) "
            "(a finite sum differentiated termwise, the product rule; ref does not depend on "
            "the parameters), over any finite set",
            Sum(Derivative(p * (log(p) - log(ref[i])), vartheta), (i, 0, n - 1)),
            Sum(
                p * diff(log(p), vartheta) * weight(log(p), log(ref[i])) + diff(p, vartheta),
                (i, 0, n - 1),
            ),
            doit=True,
        ),
        *chain(
            [
                check_identity(
                    "... and sum_y d pi(y) = d sum_y pi(y) (termwise differentiation of the "
                    "finite sum)",
                    Sum(diff(p, vartheta), (i, 0, n - 1)),
                    Derivative(norm, vartheta),
                    doit=True,
                ),
                check_identity(
                    "the second term is d (sum_y pi(y)) = d 1 = 0 (normalisation, proved by "
                    "induction over T for the autoregressive policy: steps 1-2)",
                    Derivative(norm, vartheta),
                    0,
                    assume={norm: 1},
                ),
            ]
        ),
    ]


def _engine_form_step() -> Step:
    q = Function("Q")
    return check_identity(
        "the engine's centred form: sum_u pi(u|n) (Q(n,v) - Q(n,u)) = Q(n,v) - sum_u pi(u|n) Q(n,u), "
        "so rho(n) pi(v|n) sum_u pi(u|n) (Q_v - Q_u) = sum_y pi(y) A(y) d log pi(y) / d theta[n, v]",
        Sum(first(u, vartheta) * (q(v) - q(u)), (u, 0, V - 1)),
        q(v) - Sum(first(u, vartheta) * q(u), (u, 0, V - 1)),
        assume={Sum(first(u, vartheta), (u, 0, V - 1)): 1},
    )


# --------------------------------------------------------------------------- cross-checks


def _responses(vocab: int, cap: int) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for length in range(1, cap + 1):
        out += [(*body, 0) for body in itertools.product(range(1, vocab), repeat=length - 1)]
    out += list(itertools.product(range(1, vocab), repeat=cap))
    return out


def _prob(yy: tuple[int, ...], table: dict[tuple[tuple[int, ...], int], Expr], vocab: int) -> Expr:
    """pi(y) = prod_t x[prefix, y_t] / sum_z x[prefix, z] (x = e^theta)."""
    out = sympy.Integer(1)
    for t, w in enumerate(yy):
        pre = yy[:t]
        out *= table[(pre, w)] / sum(table[(pre, z)] for z in range(vocab))
    return out


def _concrete_cases(
    shapes: tuple[tuple[int, int], ...], kl: bool, weight: KlWeight, continuation: ContinuationScore
) -> Callable[[], list[tuple[str, Expr, Expr]]]:
    """For each ``(V, T)``: d J / d theta[n, w] directly vs sum_y pi A d log pi, symbolic logits."""

    def one_shape(vocab: int, cap: int) -> list[tuple[str, Expr, Expr]]:
        ys = _responses(vocab, cap)
        prefixes = sorted({yy[:t] for yy in ys for t in range(len(yy))})

        def name(pre: tuple[int, ...]) -> str:
            return "".join(map(str, pre))

        x = {
            (pre, w): Symbol(f"x_{name(pre)}_{w}", positive=True)
            for pre in prefixes
            for w in range(vocab)
        }
        xr = {
            (pre, w): Symbol(f"r_{name(pre)}_{w}", positive=True)
            for pre in prefixes
            for w in range(vocab)
        }
        rewards = {yy: Symbol(f"R_{name(yy)}", real=True) for yy in ys}
        beta = Symbol("beta", positive=True)
        pis = {yy: _prob(yy, x, vocab) for yy in ys}
        log_ref = {yy: log(_prob(yy, xr, vocab)) for yy in ys}
        objective = sum(pis[yy] * rewards[yy] for yy in ys)
        if kl:
            objective -= beta * sum(pis[yy] * (log(pis[yy]) - log_ref[yy]) for yy in ys)
        cases = []
        for pre in prefixes:
            for w in range(vocab):
                coord = x[(pre, w)]
                direct = coord * diff(objective, coord)  # d/d theta = x d/dx with x = e^theta
                via = sympy.Integer(0)
                for yy in ys:
                    if yy[: len(pre)] != pre or len(yy) <= len(pre):
                        continue  # y does not pass through this node: no position reads it
                    token_score = KroneckerDelta(yy[len(pre)], w) - coord / sum(
                        x[(pre, z)] for z in range(vocab)
                    )
                    score = (
                        continuation(token_score, 0) if not pre else continuation(0, token_score)
                    )
                    a = rewards[yy]
                    if kl:
                        a -= beta * weight(log(pis[yy]), log_ref[yy])
                    via += pis[yy] * a * score
                label = f"V={vocab}, T={cap}, theta[{name(pre) or 'start'}, {w}]"
                cases.append(
                    (label, sympy.expand_log(direct, force=True), sympy.expand_log(via, force=True))
                )
        return cases

    def build() -> list[tuple[str, Expr, Expr]]:
        return [case for vocab, cap in shapes for case in one_shape(vocab, cap)]

    return build


_SCORE_SHAPES = ((2, 1), (3, 1), (2, 2), (2, 3))
_KL_SHAPES = ((2, 1), (2, 2), (3, 1))


# --------------------------------------------------------------------------- the proofs


def prove_sequence_score_function(*, continuation_score: ContinuationScore = _sum_score) -> Proof:
    r"""``sequence-score-function``: :math:`\nabla E_{y\sim\pi}[R(y)] = E_{y\sim\pi}[R(y)\nabla\log\pi(y)]`.

    For the tabular autoregressive policy with any vocabulary ``V`` and length cap ``T``
    (induction over ``T``, symbolic ``V`` and subtree sizes), then the per-node softmax
    score :math:`\delta_{y_t v} - \pi(v\mid n)` and the engine's centred form.
    ``continuation_score(dlp, dlq)`` is the candidate for :math:`\partial\log\pi(v\,y')`
    (default ``dlp + dlq``).

    >>> proof = prove_sequence_score_function()
    >>> proof.ok, proof.scope
    (True, 'general')
    """
    return make_proof(
        "sequence-score-function",
        "grad E_{y~pi}[R(y)] = E_{y~pi}[R(y) grad log pi(y)] for the tabular autoregressive "
        "policy, every V >= 2 and T >= 1; d log pi(y) / d theta[n, v] = sum over positions at "
        "n of (delta(y_t, v) - pi(v | n))",
        lambda: (
            _normalisation_steps()
            + _score_induction_steps(continuation_score)
            + _softmax_token_score_steps()
            + [_engine_form_step()]
            + [
                check_cases(
                    "direct differentiation of J = sum_y pi(y) R(y) with symbolic logits and rewards "
                    "vs sum_y pi(y) R(y) sum_t (delta - pi) at every coordinate",
                    _concrete_cases(_SCORE_SHAPES, False, _log_ratio, continuation_score),
                    bound="(V, T) in " + ", ".join(map(str, _SCORE_SHAPES)),
                    role="cross-check",
                )
            ]
        ),
    )


def prove_sequence_kl_gradient(*, weight: KlWeight = _log_ratio) -> Proof:
    r"""``sequence-kl-gradient``: the gradient of the sequence-level reverse KL.

    :math:`\nabla\mathrm{KL}(\pi\|\pi_{\mathrm{ref}}) = E_\pi[(\log\pi - \log\pi_{\mathrm{ref}})\nabla\log\pi]`
    over any finite set of responses (so for every ``V``, ``T``), using the
    normalisation of the autoregressive policy; hence
    :math:`\nabla J = E_\pi[(R - \beta(\log\pi - \log\pi_{\mathrm{ref}}))\nabla\log\pi]`.
    ``weight(log_pi, log_ref)`` is the candidate weight (default ``log_pi - log_ref``).

    >>> prove_sequence_kl_gradient().ok
    True
    >>> prove_sequence_kl_gradient(weight=lambda lp, lr: lp).ok
    False
    """
    return make_proof(
        "sequence-kl-gradient",
        "grad KL(pi || pi_ref) = E_pi[(log pi - log pi_ref) grad log pi] (sequence-level reverse "
        "KL, pi_ref fixed), so grad J = E_pi[(R - beta (log pi - log pi_ref)) grad log pi]",
        lambda: (
            _normalisation_steps()
            + _kl_steps(weight)
            + [
                check_cases(
                    "direct differentiation of J = sum_y pi R - beta KL with symbolic logits, reference "
                    "logits, rewards and beta vs sum_y pi(y) A(y) sum_t (delta - pi)",
                    _concrete_cases(_KL_SHAPES, True, weight, _sum_score),
                    bound="(V, T) in " + ", ".join(map(str, _KL_SHAPES)),
                    role="cross-check",
                )
            ]
        ),
    )


SEQUENCE_PROOFS: Mapping[str, Callable[..., Proof]] = MappingProxyType(
    {
        "sequence-score-function": prove_sequence_score_function,
        "sequence-kl-gradient": prove_sequence_kl_gradient,
    }
)
"""The sequence-level proofs by identifier (the setting of :mod:`impl.sequence`)."""


def prove_sequence() -> tuple[Proof, ...]:
    """Every sequence-level proof, rebuilt and checked."""
    return tuple(prove() for prove in SEQUENCE_PROOFS.values())


_ = N_COORD  # the softmax steps differentiate at a coordinate m of V = m + r + 1 logits

__all__ = [
    "SEQUENCE_PROOFS",
    "ContinuationScore",
    "KlWeight",
    "prove_sequence",
    "prove_sequence_kl_gradient",
    "prove_sequence_score_function",
]
