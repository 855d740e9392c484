"""Finding the user's callable from ``PATH.py:FUNC`` or ``module:FUNC``, in the child process.

Importing user code may fail in any way; :class:`_LoadFailed` carries what we were doing and the
exception, :class:`_Usage` a usage problem (no such file, module or attribute).
"""

from __future__ import annotations

import importlib
import importlib.util
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
    saved = list(sys.path)
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


def _lookup(obj: Any, dotted: str, where: str) -> Any:
    for part in dotted.split("."):
        if not part:
            raise _Usage(f"{where} has no attribute {dotted!r}")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _Usage(f"{where} has no attribute {dotted!r}") from None
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
        except InvalidArgument as exc:
            raise _Usage(str(exc)) from None
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
