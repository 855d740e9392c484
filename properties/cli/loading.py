"""Finding the user's callable from ``PATH.py:FUNC`` or ``module:FUNC``, in the child process.

Importing user code may fail in any way; :class:`_LoadFailed` carries what we were doing and the
exception, :class:`_Usage` a usage problem (no such file, module or attribute).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from properties.cli.state import _PHASE, IMPORTING, LOOKING_UP, State
from properties.judging.user_code import type_name


class _Usage(Exception):
    """Bad usage discovered in the child (no such module or attribute)."""


class _LoadFailed(Exception):
    """User code failed while being imported or looked up; ``where`` says what we were doing."""

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(where)
        self.where = where
        self.exc = exc


def _repair_sys_path(saved: list[str], folder: str | None) -> None:
    """Undo an import's removal of our ``sys.path`` entries (additions are kept)."""
    if not isinstance(sys.path, list):
        sys.path = []
    for entry in ([folder] if folder else []) + saved:
        if entry not in sys.path:
            sys.path.append(entry)


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def split_target(target: str) -> tuple[str, str, str]:
    """``(form, head, attr)``: ``form`` is ``file``, ``module`` or ``catalogue``; raises ValueError."""
    head, sep, attr = target.rpartition(":")
    if not sep or not head or not attr:
        raise ValueError(
            f"expected TARGET as PATH.py:FUNC, module:FUNC or catalogue:NAME but got {target!r}"
        )
    if head == "catalogue":
        return "catalogue", head, attr
    if head.endswith(".py") or "/" in head or "\\" in head:
        return "file", head, attr
    if not _MODULE_NAME.match(head):
        raise ValueError(f"{head!r} in {target!r} is neither a .py file nor a module name")
    return "module", head, attr


def no_catalogue_entry(name: str) -> str:
    """The one line for ``catalogue:NAME`` with no such entry, with the closest names.

    >>> no_catalogue_entry("rlo")
    "no catalogue entry 'rlo' (the names are in impl/catalogue/); did you mean 'rloo'?"
    """
    from impl.catalogue import CATALOGUE, MULTI_PROMPT_CATALOGUE

    names = [e.name for e in CATALOGUE] + [e.name for e in MULTI_PROMPT_CATALOGUE]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"no catalogue entry {name!r} (the names are in impl/catalogue/){_did_you_mean(close)}"


def _did_you_mean(close: list[str]) -> str:
    """``"; did you mean 'a', 'b' or 'c'?"`` (``""`` for no names).

    >>> _did_you_mean(["a", "b", "c"]), _did_you_mean(["a"]), _did_you_mean([])
    ("; did you mean 'a', 'b' or 'c'?", "; did you mean 'a'?", '')
    """
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    head = ", ".join(quoted[:-1])
    return f"; did you mean {head + ' or ' if head else ''}{quoted[-1]}?"


def _module_name(path: Path) -> str:
    """The file's stem when importing it under that name is what ``import stem`` would do, else a private name.

    (Messages then name the user's classes as ``est.MyError``, and a neighbour that does
    ``import est`` gets this module rather than a second copy.)
    """
    stem = path.stem
    if stem.isidentifier() and stem not in sys.modules:
        try:
            spec = importlib.util.find_spec(stem)  # a top-level name: runs no user code
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).resolve() == path.resolve():
            return stem
    return f"_ida_verify_user_{uuid.uuid4().hex}"


def _import_file(path: Path) -> Any:
    folder = str(path.resolve().parent)
    saved = list(sys.path)
    sys.path.insert(0, folder)  # so that the file can import its neighbours, also later
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _Usage(f"cannot import {str(path)!r} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise _LoadFailed(f"importing {str(path)!r}", exc) from None
    finally:
        _repair_sys_path(saved, folder)
    return module


def _import_module(head: str) -> Any:
    """Import ``head`` as ``python -m`` would: the current directory first on ``sys.path``
    (the console script's own ``sys.path`` starts with its ``bin`` directory instead)."""
    saved = list(sys.path)
    cwd = _cwd()
    if cwd is not None and cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(head)
    except (SystemExit, KeyboardInterrupt):
        raise
    except ModuleNotFoundError as exc:
        missing = getattr(exc, "name", None)
        if isinstance(missing, str) and (head == missing or head.startswith(missing + ".")):
            raise _Usage(f"cannot import module {head!r}: no module named {missing!r}") from None
        raise _LoadFailed(f"importing module {head!r}", exc) from None
    except BaseException as exc:
        raise _LoadFailed(f"importing module {head!r}", exc) from None
    finally:
        _repair_sys_path(saved, None)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed under us
        return None


def _suggestion(obj: Any, part: str) -> str:
    """``"; did you mean 'reinforce'?"`` for a misspelt attribute of ``obj``, else ``""``.

    ``dir()`` of a user's module may run user code (a module ``__dir__``): whatever it does
    costs only the suggestion.
    """
    try:
        names = [n for n in dir(obj) if isinstance(n, str) and not n.startswith("__")]
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        return ""
    return _did_you_mean(difflib.get_close_matches(part, names, n=3, cutoff=0.6))


def _lookup(obj: Any, dotted: str, where: str) -> Any:
    for part in dotted.split("."):
        if not part:
            raise _Usage(f"{where} has no attribute {dotted!r}")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _Usage(f"{where} has no attribute {dotted!r}{_suggestion(obj, part)}") from None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise _LoadFailed(f"looking up {dotted!r} in {where}", exc) from None
    return obj


def load_target(target: str, state: State) -> Callable[..., Any]:
    """Import the target's file or module and return ``FUNC`` (in the child)."""
    try:
        form, head, attr = split_target(target)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    state[_PHASE] = IMPORTING
    if form == "catalogue":
        from impl.catalogue import MULTI_PROMPT_CATALOGUE, get, get_multi_prompt
        from impl.errors import InvalidArgument

        try:
            if any(entry.name == attr for entry in MULTI_PROMPT_CATALOGUE):
                return get_multi_prompt(attr).fn
            return get(attr).fn
        except InvalidArgument:
            raise _Usage(no_catalogue_entry(attr)) from None
    if form == "file":
        path = Path(head)
        if not path.is_file():
            raise _Usage(f"no such file {head!r}")
        module, where = _import_file(path), f"file {head!r}"
    else:
        module, where = _import_module(head), f"module {head!r}"
    state[_PHASE] = LOOKING_UP
    fn = _lookup(module, attr, where)
    if not callable(fn):
        raise _Usage(f"{attr!r} in {where} is not callable (it is a {type_name(type(fn))})")
    return fn  # type: ignore[no-any-return]


_PROTOCOLS = {
    "estimator": "a one-step estimator as FUNC(logits, samples, rewards)",
    "pooled": "a multi-prompt estimator (--num-prompts) as FUNC(logits, samples, rewards, group)",
    "sequence": "a --sequence loss as FUNC(batch)",
    "token-weights": "--weights token weights as FUNC(rewards, mask, log_probs)",
}
"""How each kind of check calls ``FUNC`` (``pooled``: ``estimator`` with ``--num-prompts``)."""

_ARITY = {"estimator": 3, "pooled": 4, "sequence": 1, "token-weights": 3}
"""The positional arguments of each protocol's call."""

_ADVICE = {
    ("estimator", "sequence"): "did you mean --sequence?",
    ("estimator", "pooled"): "did you mean --num-prompts (the multi-prompt protocol)?",
    ("sequence", "estimator"): "did you mean to check it without --sequence?",
    ("sequence", "token-weights"): "did you mean --weights?",
    ("sequence", "pooled"): "did you mean to check it without --sequence, with --num-prompts?",
    ("token-weights", "sequence"): "did you mean --sequence without --weights?",
    ("token-weights", "pooled"): "did you mean to check it without --weights, with --num-prompts?",
    ("pooled", "sequence"): "did you mean --sequence?",
    ("pooled", "estimator"): "did you mean to check it without --num-prompts?",
    ("pooled", "token-weights"): "did you mean --weights?",
    ("estimator", "token-weights"): "did you mean --weights?",
    ("token-weights", "estimator"): "did you mean to check it without --weights?",
}
"""What to suggest, by ``(requested protocol, protocol FUNC's signature fits)``."""

_NAMES = {
    "estimator": ("logits", "samples", "rewards"),
    "token-weights": ("rewards", "mask", "log_probs"),
}
"""The documented parameter names of the two protocols of three positional arguments: a
signature with exactly the other protocol's names is taken to mean that protocol."""


def _keywords(signature: inspect.Signature, kind: str) -> dict[str, None]:
    """The keyword arguments the check passes besides the positional ones: token weights get
    whichever of :data:`properties.sequence.evaluation.EXTRA_ARGUMENTS` they name."""
    if kind != "token-weights":
        return {}
    from properties.sequence.evaluation import EXTRA_ARGUMENTS

    ok = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = signature.parameters
    return {n: None for n in EXTRA_ARGUMENTS if n in params and params[n].kind in ok}


def _binds(signature: inspect.Signature, count: int, keywords: dict[str, None] | None = None) -> bool:
    try:
        signature.bind(*([None] * count), **(keywords or {}))
    except TypeError:
        return False
    return True


def protocol_mismatch(fn: Any, kind: str, target: str, kwargs: dict[str, Any]) -> str | None:
    """One line of bad usage when ``fn``'s signature cannot take the call of ``kind`` but fits
    another protocol's (a sequence loss checked without ``--sequence``, ...); else ``None``.

    Only a signature that ``inspect.signature`` reads, and that refuses the call, counts:
    ``*args``, unreadable signatures and callables that fit no protocol are left to the
    check, whose ``"error"`` verdict then names what the call raised.  Three positional
    parameters fit both one-step estimators and token weights: exactly the other
    protocol's documented names (``logits, samples, rewards`` or ``rewards, mask,
    log_probs``) count as a mismatch, and a first parameter named ``rewards`` points to
    ``--weights`` rather than to a one-step check.

    >>> print(protocol_mismatch(lambda batch: 0, "estimator", "f.py:loss", {}))  # doctest: +ELLIPSIS
    'loss' takes (batch), but ida-verify check calls a one-step estimator as ...: did you mean --sequence?
    >>> print(protocol_mismatch(lambda rewards, mask, log_probs: 0, "sequence", "f.py:w", {}))  # doctest: +ELLIPSIS
    'w' takes (rewards, mask, log_probs), but ... as FUNC(batch): did you mean --weights?
    >>> protocol_mismatch(lambda logits, samples, rewards: 0, "estimator", "f.py:g", {}) is None
    True
    >>> print(protocol_mismatch(lambda model, inputs: 0, "sequence", "f.py:t", {}))  # doctest: +ELLIPSIS
    't' takes (model, inputs), a trainer loss FUNC(model, inputs): ... properties.check_trainer_loss
    """
    own = "pooled" if kind == "estimator" and kwargs.get("num_prompts") is not None else kind
    if own not in _ARITY:
        return None
    try:
        signature = inspect.signature(fn)
        params = [str(p) for p in signature.parameters.values()]
        names = tuple(signature.parameters)
        fits = _binds(signature, _ARITY[own], _keywords(signature, own))
    except KeyboardInterrupt:
        raise
    except BaseException:  # a builtin, or a hostile __signature__ (sys.exit included): the check finds out
        return None
    three = "token-weights" if names[:1] == ("rewards",) else "estimator"
    if not fits and names[:1] == ("model",) and _binds(signature, 2):
        attr = target.rpartition(":")[2]
        return (
            f"{attr!r} takes ({', '.join(params)}), a trainer loss FUNC(model, inputs): the command "
            "line has no trainer mode; check it from Python with properties.check_trainer_loss"
        )
    if fits:
        named = [p for p, n in _NAMES.items() if p != own and own in _NAMES and names[:3] == n]
        candidates = named
    else:
        candidates = [p for p in ("sequence", three, "pooled") if _ARITY[p] != _ARITY[own]]
    for other in candidates:
        if _binds(signature, _ARITY[other]):
            advice = _ADVICE.get((own, other))
            if advice is None:
                return None
            attr = target.rpartition(":")[2]
            return (
                f"{attr!r} takes ({', '.join(params)}), but ida-verify check calls "
                f"{_PROTOCOLS[own]}: {advice}"
            )
    return None
