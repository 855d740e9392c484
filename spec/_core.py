r"""The proof objects and the step checkers they are built from.

A :class:`Proof` is a chain of :class:`Step` s.  Every step is *evaluated by SymPy
when it is built*: an identity is checked with ``simplify(lhs - rhs) == 0``, an
inequality through SymPy's assumption system (``expr.is_positive is True`` for
symbols declared positive, ...), a solved equation with ``solve``, a limit with
``limit``.  Nothing here stores a verdict computed elsewhere, and nothing is
cached, so a broken derivation (or a perturbed statement) shows up as
``step.ok is False`` and ``proof.ok is False``.

A step that SymPy can only check for finitely many sizes (``n <= 4``, ``k <= 6``)
says so: ``scope="bounded"`` with the bound as text.

Steps of a chain of equalities are marked with :func:`chain`: each then starts where the
previous one ended (its left-hand side is the previous right-hand side), and
:func:`make_proof` checks that it does, so a step whose left side was typed in rather
than carried over from the step before fails ("chain broken").

>>> from sympy import symbols, sin, cos
>>> x = symbols("x", real=True)
>>> check_identity("Pythagoras", sin(x)**2 + cos(x)**2, 1).ok
True
>>> check_identity("a wrong identity", sin(x)**2, 1).ok
False
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import sympy

Scope = Literal["general", "bounded"]
"""``"general"``: checked for every size; ``"bounded"``: checked for every size up to a bound."""

StepKind = Literal[
    "identity",
    "inequality",
    "solve",
    "limit",
    "telescoping",
    "recursion",
    "factorisation",
    "enumeration",
    "assumption",
]
"""What kind of argument a step is (how SymPy checked it)."""

Role = Literal["derivation", "cross-check"]
"""A step of the derivation itself, or an independent (often bounded) cross-check of it."""

Expr = Any
"""A SymPy expression (SymPy ships no type information)."""


class SpecError(ValueError):
    """A bad argument to a :mod:`spec` function (unknown claim id, malformed candidate, ...)."""


class ProofFailed(AssertionError):
    """Raised by :meth:`Proof.assert_ok`; its ``str`` is the readable proof with the failed steps."""


def _show(expr: Any) -> str:
    text = str(expr)
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(frozen=True)
class Step:
    """One checked step of a derivation.

    ``ok`` is the value SymPy computed when the step was built; ``detail`` says what
    was evaluated (the residual of an identity, the sign SymPy found, the failing
    case of an enumeration, or the exception SymPy raised).  ``role`` is
    ``"cross-check"`` for a step that re-derives a result independently (a direct
    enumeration for small sizes): it must check too, but its bound does not limit the
    scope of the proof.
    """

    description: str
    kind: StepKind
    claim: str
    ok: bool
    scope: Scope
    bound: str | None
    detail: str
    seconds: float
    role: Role = "derivation"
    lhs: Any = field(default=None, compare=False, repr=False)
    """The left-hand side (a SymPy expression) of an identity step, else ``None``."""
    rhs: Any = field(default=None, compare=False, repr=False)
    """The right-hand side (a SymPy expression) of an identity step, else ``None``."""
    follows: bool = False
    """Marked by :func:`chain`: this step must start where the previous step ended."""

    def render(self, number: int) -> str:
        """One readable paragraph: status, description, what was checked, scope."""
        status = "ok  " if self.ok else "FAIL"
        where = "general (every n, k)" if self.scope == "general" else f"bounded: {self.bound}"
        tag = " (cross-check)" if self.role == "cross-check" else ""
        tag += f" (continues step {number - 1})" if self.follows else ""
        lines = [
            f"  [{status}] {number}.{tag} {self.description}",
            f"         {self.kind}: {self.claim}",
            f"         scope: {where}; {self.detail}",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "description": self.description,
            "kind": self.kind,
            "claim": self.claim,
            "ok": self.ok,
            "scope": self.scope,
            "bound": self.bound,
            "detail": self.detail,
            "seconds": round(self.seconds, 4),
            "role": self.role,
            "follows": self.follows,
        }


@dataclass(frozen=True)
class Proof:
    """A checked derivation of one claim: ``ok`` only if it has steps and every step checked."""

    claim_id: str
    statement: str
    steps: tuple[Step, ...]
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True iff there is at least one step and SymPy checked every step."""
        return len(self.steps) > 0 and all(step.ok for step in self.steps)

    @property
    def scope(self) -> Scope:
        """``"general"`` if there is a derivation and every derivation step holds in general.

        Cross-check steps must check (``ok``) but do not limit the scope; nor do they make
        one: a proof whose steps are all bounded cross-checks (no derivation at all) is
        ``"bounded"``, a finite check and not a proof for every size.

        >>> step = check_cases("two cases", [("a", 1, 1), ("b", 2, 2)], bound="n <= 2",
        ...                    role="cross-check")
        >>> Proof("x", "a finite check only", (step,), 0.0).scope
        'bounded'
        """
        derivation = [s for s in self.steps if s.role == "derivation"]
        general = bool(derivation) and all(s.scope == "general" for s in derivation)
        return "general" if general else "bounded"

    @property
    def bounds(self) -> tuple[str, ...]:
        """The bounds that limit the proof's scope (empty for a general proof).

        Those of the bounded derivation steps; with no derivation step at all, those of the
        cross-checks (then the proof is only as wide as they are).
        """
        derivation = [s for s in self.steps if s.role == "derivation"]
        limiting = derivation if derivation else list(self.steps)
        return tuple(s.bound for s in limiting if s.bound is not None)

    @property
    def proved(self) -> bool:
        """True iff ``ok`` and ``scope == "general"``: a proof for every size.

        A bounded proof that checks is a finite check (``"checked for n <= 4"``), not a
        proof of the general statement.
        """
        return self.ok and self.scope == "general"

    @property
    def status(self) -> str:
        """``"PROVED"``, ``"CHECKED only for <bounds>"`` (ok but bounded) or ``"NOT PROVED"``."""
        if not self.ok:
            return "NOT PROVED"
        if self.scope == "general":
            return "PROVED"
        return "CHECKED only for " + ("; ".join(self.bounds) or "a bounded range")

    @property
    def failed(self) -> tuple[Step, ...]:
        """The steps that did not check."""
        return tuple(s for s in self.steps if not s.ok)

    def render(self) -> str:
        """The proof as readable text (header, statement, numbered steps)."""
        scope = "general" if self.scope == "general" else "bounded (" + "; ".join(self.bounds) + ")"
        head = f"{self.claim_id}: {self.status}  [{scope}; {self.seconds:.2f} s]"
        if self.ok and not self.proved:
            head += "  (no general derivation: not a proof for every size)"
        body = [head, f"  statement: {self.statement}"]
        body += [f"  note: {note}" for note in self.notes]
        body += [step.render(i + 1) for i, step in enumerate(self.steps)]
        return "\n".join(body)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the derived ``ok``/``scope`` included)."""
        return {
            "claim": self.claim_id,
            "ok": self.ok,
            "scope": self.scope,
            "proved": self.proved,
            "bounds": list(self.bounds),
            "statement": self.statement,
            "seconds": round(self.seconds, 4),
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
        }

    def assert_ok(self) -> None:
        """Raise :class:`ProofFailed` (with the readable proof) unless ``ok``."""
        if not self.ok:
            failed = ", ".join(str(self.steps.index(s) + 1) for s in self.failed) or "none"
            raise ProofFailed(
                f"proof of {self.claim_id} failed at step(s) {failed}\n{self.render()}"
            )


def _timed(
    description: str,
    kind: StepKind,
    claim: str,
    check: Callable[[], tuple[bool, str]],
    scope: Scope,
    bound: str | None,
    role: Role = "derivation",
    sides: tuple[Expr, Expr] | None = None,
) -> Step:
    if scope == "bounded" and not bound:
        raise SpecError(f"a bounded step needs its bound but got bound={bound!r} (type=str)")
    if scope == "general" and bound is not None:
        raise SpecError(f"a general step takes no bound but got bound={bound!r}")
    start = time.perf_counter()
    try:
        ok, detail = check()
    except Exception as exc:
        ok, detail = False, f"SymPy raised {type(exc).__name__}: {exc}"
    return Step(
        description=description,
        kind=kind,
        claim=claim,
        ok=bool(ok),
        scope=scope,
        bound=bound,
        detail=detail,
        seconds=time.perf_counter() - start,
        role=role,
        lhs=None if sides is None else sides[0],
        rhs=None if sides is None else sides[1],
    )


def is_zero(expr: Expr) -> bool:
    """``simplify(expr) == 0``, as a Python bool (structural equality with SymPy's zero)."""
    return bool(sympy.simplify(expr) == 0)


def check_identity(
    description: str,
    lhs: Expr,
    rhs: Expr,
    *,
    kind: StepKind = "identity",
    scope: Scope = "general",
    bound: str | None = None,
    doit: bool = False,
    assume: dict[Expr, Expr] | None = None,
    given: dict[Expr, Expr] | None = None,
) -> Step:
    """Check ``lhs = rhs`` by ``simplify(lhs - rhs) == 0`` (after ``doit()`` if asked).

    ``given`` is a substitution applied *before* ``doit()``: the result of an earlier step
    (``E[score] -> 0``), so that it is used where it was derived and not typed into a side.

    ``assume`` is a substitution that states a hypothesis or names a quantity (the
    normalisation ``sum_i p_i -> 1``, or both spellings ``sum_i e^theta_i`` and
    ``sum_j e^theta_j`` of the partition function -> ``Z``); it is applied before and
    after simplification and is printed in the step's ``detail``.

    This is the step tests call with a wrong right-hand side to see it fail.

    >>> from sympy import Sum, IndexedBase, symbols
    >>> i, n = symbols("i n", integer=True)
    >>> a = IndexedBase("a")
    >>> check_identity("telescoping", Sum(a[i] - a[i - 1], (i, 1, n)), a[n] - a[0], doit=True).ok
    True
    """

    def run() -> tuple[bool, str]:
        diff = sympy.sympify(lhs) - sympy.sympify(rhs)
        if given:
            diff = diff.xreplace(given)  # structural: also inside sums over a bound index
        if doit:
            diff = diff.doit()
        if assume:
            diff = diff.subs(assume).xreplace(assume)
        # expand() == 0 already shows the identity (and is much faster than simplify on sums)
        residual = sympy.Integer(0) if sympy.expand(diff) == 0 else sympy.simplify(diff)
        if assume:
            residual = sympy.simplify(residual.subs(assume).xreplace(assume))
        using = f" using {_show(assume)}" if assume else ""
        using += f" given {_show(given)}" if given else ""
        return bool(residual == 0), f"simplify(lhs - rhs) = {_show(residual)}{using}"

    sides = (sympy.sympify(lhs), sympy.sympify(rhs))
    return _timed(description, kind, f"{_show(lhs)} = {_show(rhs)}", run, scope, bound, sides=sides)


def chain(steps: Sequence[Step]) -> list[Step]:
    """Mark ``steps`` as one chain of equalities: each must start where the previous ended.

    :func:`make_proof` checks every link: a marked step whose left-hand side is not the
    previous step's right-hand side (up to ``simplify``) fails, "chain broken".

    >>> from sympy import Symbol
    >>> x = Symbol("x", real=True)
    >>> ok = chain([check_identity("a", (x + 1)**2, x**2 + 2*x + 1),
    ...             check_identity("b", x**2 + 2*x + 1, x*(x + 2) + 1)])
    >>> make_proof("c", "a chain", lambda: ok).ok
    True
    >>> typed = chain([check_identity("a", (x + 1)**2, x**2 + 2*x + 1),
    ...                check_identity("b", x**2, x*x)])
    >>> proof = make_proof("c", "a chain whose second step starts elsewhere", lambda: typed)
    >>> proof.ok, "chain broken" in proof.steps[1].detail
    (False, True)
    """
    return [s if n == 0 else replace(s, follows=True) for n, s in enumerate(steps)]


def _link(step: Step, previous: Step | None, number: int) -> Step:
    """``step`` as is if it is not chained or starts where ``previous`` ended; else failed."""
    if not step.follows:
        return step
    if previous is None or previous.rhs is None or step.lhs is None:
        why = "it has no previous identity step to continue"
    else:
        try:
            joined = step.lhs == previous.rhs or is_zero(step.lhs - previous.rhs)
        except Exception as exc:  # reported as a broken link
            joined, why = False, f"comparing the two raised {type(exc).__name__}: {exc}"
        else:
            why = f"it starts at {_show(step.lhs)} but step {number - 1} ended at {_show(previous.rhs)}"
        if joined:
            return step
    return replace(step, ok=False, detail=f"{step.detail}; chain broken: {why}")


Sign = Literal["positive", "negative", "nonnegative", "nonpositive", "nonzero", "zero"]


def check_sign(
    description: str,
    expr: Expr,
    sign: Sign,
    *,
    scope: Scope = "general",
    bound: str | None = None,
) -> Step:
    """Check ``expr`` has ``sign`` through SymPy's assumptions (``expr.is_<sign> is True``).

    The symbols' declared assumptions (``positive=True``, ...) are the hypotheses of
    the inequality; SymPy answering ``None`` (unknown) counts as a failure.

    >>> from sympy import Symbol
    >>> b, k = Symbol("b", positive=True), Symbol("k", integer=True, positive=True)
    >>> check_sign("b^k > 0 for b > 0", b**k, "positive").ok
    True
    >>> check_sign("1 - b^k > 0 is not implied", 1 - b**k, "positive").ok
    False
    """

    def run() -> tuple[bool, str]:
        value = getattr(sympy.sympify(expr), f"is_{sign}")
        return value is True, f"SymPy: is_{sign} -> {value}"

    return _timed(description, "inequality", f"{_show(expr)} is {sign}", run, scope, bound)


def check_solve(
    description: str,
    equation: Expr,
    unknown: Expr,
    expected: Sequence[Expr],
    *,
    scope: Scope = "general",
    bound: str | None = None,
) -> Step:
    """Check that ``solve(equation = 0, unknown)`` gives exactly ``expected`` (as a set).

    >>> from sympy import Symbol
    >>> x = Symbol("x", positive=True)
    >>> check_solve("stationary point", 1 - 1 / x, x, [1]).ok
    True
    """

    def run() -> tuple[bool, str]:
        sols = sympy.solve(equation, unknown, dict=False)
        got = [sympy.simplify(s) for s in sols]
        want = [sympy.sympify(e) for e in expected]
        ok = len(got) == len(want) and all(any(is_zero(g - w) for g in got) for w in want)
        return ok, f"solutions {got}, expected {want}"

    claim = f"solve({_show(equation)} = 0, {unknown}) = {list(expected)}"
    return _timed(description, "solve", claim, run, scope, bound)


def check_limit(
    description: str,
    expr: Expr,
    var: Expr,
    point: Expr,
    expected: Expr,
    *,
    scope: Scope = "general",
    bound: str | None = None,
) -> Step:
    """Check ``limit(expr, var, point) = expected``.

    >>> from sympy import Symbol, oo
    >>> c, k = Symbol("c", positive=True), Symbol("k", positive=True)
    >>> check_limit("geometric decay", (1 / (1 + c))**k, k, oo, 0).ok
    True
    """

    def run() -> tuple[bool, str]:
        value = sympy.limit(expr, var, point)
        return is_zero(value - expected), f"limit = {_show(value)}"

    claim = f"lim_{{{var} -> {point}}} {_show(expr)} = {_show(expected)}"
    return _timed(description, "limit", claim, run, scope, bound)


def check_factorisation(
    description: str,
    summand: Expr,
    left: Expr,
    right: Expr,
    left_index: Expr,
    right_index: Expr,
) -> Step:
    r"""Check a double sum factorises: ``summand = left * right``, ``left`` free of
    ``right_index`` and ``right`` free of ``left_index``.

    Then :math:`\sum_a\sum_b f(a,b) = (\sum_a g(a))(\sum_b h(b))` over any finite ranges
    (distributivity), which is how independence of two samples enters a proof.

    >>> from sympy import IndexedBase, symbols
    >>> a, b = symbols("a b", integer=True)
    >>> P, g = IndexedBase("P"), IndexedBase("g")
    >>> check_factorisation("independence", P[a] * P[b] * g[b], P[a], P[b] * g[b], a, b).ok
    True
    >>> check_factorisation("not separable", P[a] * g[a] * g[b], P[a], g[a] * g[b], a, b).ok
    False
    """

    def run() -> tuple[bool, str]:
        residual = sympy.simplify(summand - left * right)
        separable = right_index not in left.free_symbols and left_index not in right.free_symbols
        # an Indexed object's free_symbols include its index symbols
        return (
            bool(residual == 0) and separable,
            f"residual {_show(residual)}; separable: {separable}",
        )

    claim = f"{_show(summand)} = [{_show(left)}] * [{_show(right)}]"
    return _timed(description, "factorisation", claim, run, "general", None)


def check_cases(
    description: str,
    cases: Iterable[tuple[str, Expr, Expr]] | Callable[[], Iterable[tuple[str, Expr, Expr]]],
    *,
    bound: str,
    kind: StepKind = "enumeration",
    role: Role = "derivation",
) -> Step:
    """Check every case ``(label, lhs, rhs)`` with ``simplify(lhs - rhs) == 0`` (a bounded step).

    ``cases`` may be a callable building the cases, so that an error while building them
    is reported as a failed step.  ``detail`` names the first failing case.

    >>> from sympy import Symbol
    >>> b = Symbol("b")
    >>> cases = [(f"k={k}", (b - 1) * sum(b**i for i in range(k)), b**k - 1) for k in (1, 2, 3)]
    >>> check_cases("geometric sums", cases, bound="k <= 3").scope
    'bounded'
    """

    def run() -> tuple[bool, str]:
        count = 0
        for label, lhs, rhs in cases() if callable(cases) else cases:
            count += 1
            residual = sympy.simplify(sympy.expand(lhs - rhs))
            if residual != 0:
                return False, f"case {label}: lhs - rhs = {_show(residual)}"
        if count == 0:
            return False, "no cases"
        return True, f"all {count} cases checked"

    return _timed(description, kind, description, run, "bounded", bound, role)


def check_predicate(
    description: str,
    claim: str,
    predicate: Callable[[], tuple[bool, str]],
    *,
    kind: StepKind = "inequality",
    scope: Scope = "general",
    bound: str | None = None,
    role: Role = "derivation",
) -> Step:
    """A step whose check is a callable returning ``(ok, detail)``, evaluated now.

    For compound arguments (several SymPy sign checks combined); the callable must
    compute ``ok`` from SymPy, never return a constant.
    """
    return _timed(description, kind, claim, predicate, scope, bound, role)


def make_proof(
    claim_id: str, statement: str, build: Callable[[], list[Step]], notes: Sequence[str] = ()
) -> Proof:
    """Run ``build`` (which checks every step) and time it into a :class:`Proof`.

    If building the derivation raises (a malformed candidate statement, a SymPy error
    outside a step), the proof holds one failed step saying so instead of crashing.
    """
    start = time.perf_counter()
    try:
        built = list(build())
        steps = tuple(_link(s, built[n - 1] if n > 0 else None, n + 1) for n, s in enumerate(built))
    except Exception as exc:  # reported as a failed step
        steps = (
            Step(
                description="building the derivation",
                kind="assumption",
                claim=statement,
                ok=False,
                scope="general",
                bound=None,
                detail=f"raised {type(exc).__name__}: {exc}",
                seconds=time.perf_counter() - start,
            ),
        )
    return Proof(
        claim_id=claim_id,
        statement=statement,
        steps=steps,
        seconds=time.perf_counter() - start,
        notes=tuple(notes),
    )


__all__ = [
    "Expr",
    "Proof",
    "ProofFailed",
    "Role",
    "Scope",
    "Sign",
    "SpecError",
    "Step",
    "StepKind",
    "chain",
    "check_cases",
    "check_factorisation",
    "check_identity",
    "check_limit",
    "check_predicate",
    "check_sign",
    "check_solve",
    "is_zero",
    "make_proof",
]
