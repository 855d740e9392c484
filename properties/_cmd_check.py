"""``ida-verify check TARGET``: check a gradient estimator for bias, exactly.

``TARGET`` is one of

* ``path/to/file.py:FUNC`` (a file; ``FUNC`` may be dotted, ``file.py:Class.method``),
* ``package.module:FUNC`` (an importable module),
* ``catalogue:NAME`` (an entry of :mod:`impl.catalogue`; always batched, and its group
  sizes default to ``min_k..4`` so that ``k = 1`` is checked where the entry allows it).

Exit status: 0 for ``unbiased``, 1 for any other verdict, 2 for bad usage (no such
file, module, function or catalogue entry; not callable; bad ``--group-sizes``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any

from impl.errors import InvalidArgument
from properties._cmd_check_sequence import add_sequence_arguments, run_sequence
from properties.checker import (
    DEFAULT_GROUP_SIZES,
    DEFAULT_MAX_EXAMPLES,
    MAX_GROUP_SIZE,
    check_estimator,
)
from properties.cli import UsageError

_PREFIX = "ida-verify check: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``ida-verify check``."""
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="PATH.py:FUNC, module:FUNC, or catalogue:NAME (an impl.catalogue entry)",
    )
    parser.add_argument(
        "--group-sizes",
        default=None,
        metavar="K,K,...",
        help=f"comma-separated group sizes k to check (default {','.join(map(str, DEFAULT_GROUP_SIZES))}; "
        "for catalogue:NAME, min_k..4)",
    )
    parser.add_argument(
        "--batched",
        action="store_true",
        help="FUNC takes samples/rewards of shape (B, k) and returns (B, n) (faster)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        help=f"generated problems after the fixed battery (default {DEFAULT_MAX_EXAMPLES})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_sequence_arguments(parser)


def _group_sizes(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"{_PREFIX}--group-sizes must be comma-separated integers like 2,3,4 but got {text!r}"
        ) from None
    if not all(1 <= k <= MAX_GROUP_SIZE for k in ks):
        raise UsageError(
            f"{_PREFIX}--group-sizes must be integers between 1 and {MAX_GROUP_SIZE} but got {text!r}"
        )
    return ks


def _attribute(obj: Any, dotted: str, where: str) -> Any:
    for part in dotted.split("."):
        if not part or not hasattr(obj, part):
            raise UsageError(f"{_PREFIX}{where} has no attribute {dotted!r}")
        obj = getattr(obj, part)
    return obj


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"{_PREFIX}no such file {str(path)!r}")
    name = f"_ida_verify_user_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{_PREFIX}cannot import {str(path)!r} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(
            f"{_PREFIX}importing {str(path)!r} failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def resolve(target: str) -> tuple[Any, str, bool | None, tuple[int, ...] | None]:
    """``(fn, name, batched or None, default group sizes or None)`` for a TARGET string."""
    head, sep, attr = target.rpartition(":")
    if not sep or not head or not attr:
        raise UsageError(
            f"{_PREFIX}expected TARGET as PATH.py:FUNC, module:FUNC or catalogue:NAME but got {target!r}"
        )
    if head == "catalogue":
        from impl.catalogue import get

        try:
            entry = get(attr)
        except InvalidArgument as exc:
            raise UsageError(f"{_PREFIX}{exc}") from None
        return entry.fn, f"catalogue:{entry.name}", True, tuple(range(entry.min_k, 5))
    if head.endswith(".py") or "/" in head or "\\" in head:
        module = _load_file(Path(head))
        where = f"file {head!r}"
    else:
        try:
            module = importlib.import_module(head)
        except ImportError as exc:
            raise UsageError(f"{_PREFIX}cannot import module {head!r}: {exc}".replace("\n", " ")) from None
        except Exception as exc:
            raise UsageError(
                f"{_PREFIX}importing module {head!r} failed: {type(exc).__name__}: {exc}".replace("\n", " ")
            ) from None
        where = f"module {head!r}"
    fn = _attribute(module, attr, where)
    if not callable(fn):
        raise UsageError(f"{_PREFIX}{attr!r} in {where} is not callable (it is a {type(fn).__name__})")
    return fn, attr, None, None


def run(args: argparse.Namespace) -> int:
    """Run ``ida-verify check``; return the exit status (0 unbiased, 1 otherwise, 2 usage)."""
    if args.max_examples < 0:
        raise UsageError(f"{_PREFIX}--max-examples must be >= 0 but got {args.max_examples}")
    if args.seed < 0:
        raise UsageError(f"{_PREFIX}--seed must be >= 0 but got {args.seed}")
    fn, name, batched, default_ks = resolve(args.target)
    if args.group_sizes is not None:
        ks = _group_sizes(args.group_sizes)
    else:
        ks = default_ks or DEFAULT_GROUP_SIZES
    if args.sequence or args.weights:
        return run_sequence(args, fn, name, ks)
    report = check_estimator(
        fn,
        group_sizes=ks,
        seed=args.seed,
        max_examples=args.max_examples,
        batched=bool(args.batched or batched),
        name=name,
    )
    print(report.to_json() if args.json else report.message)
    return 0 if report.verdict == "unbiased" else 1
