"""Running and describing user code without trusting it (private; shared by the checkers).

User code may raise anything (``Exception``, ``BaseException`` subclasses,
``GeneratorExit``, ``SystemExit`` from ``sys.exit``), raise exceptions whose ``__str__``
raises, return objects whose ``repr`` raises or returns a non-string, and hand over
callables whose ``__qualname__`` lookup raises.  Everything here turns that into plain
text or into one exception type of ours, :class:`UserCodeError`, and never lets a
traceback of ours out.  The single exception is :class:`KeyboardInterrupt`: a user who
presses Ctrl-C wants the run to stop (the command line turns it into exit status 130).

* :func:`call_user` runs user code; anything it raises except ``KeyboardInterrupt``
  becomes a :class:`UserCodeError` carrying the text, the original type's name and
  whether the code tried to exit (``SystemExit``).
* :func:`safe_text`, :func:`exception_text` and :func:`name_of` describe user objects,
  exceptions and callables; they never raise (except ``KeyboardInterrupt``).
* :func:`kept_torch_modes` puts torch's global modes back after a region of user code
  (a loss that turns off grad mode must not turn it off for every later check).

>>> def bad():
...     raise SystemExit(0)
>>> try:
...     call_user(bad)
... except UserCodeError as err:
...     print(err.kind, err.type_name)
exited SystemExit
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

MAX_TEXT = 2000
"""Longest text :func:`safe_text` returns (a longer repr is cut and says how long it was)."""

_T = TypeVar("_T")

_TYPE_QUALNAME = type.__dict__["__qualname__"]
_TYPE_NAME = type.__dict__["__name__"]
_TRACEBACK = BaseException.__dict__["__traceback__"]


def _plain(text: Any) -> str | None:
    """``text`` as an exact ``str`` if it is a ``str`` (or subclass), else ``None``."""
    if type(text) is str:
        return text
    if issubclass(type(text), str):
        out: str = str.__str__(text)  # the base-class method: a subclass cannot interfere
        return out
    return None


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    tail = f"... ({len(text)} characters)"
    return text[: max(limit - len(tail), 0)] + tail


def type_name(cls: type) -> str:
    """The qualified name of a class, read past any metaclass override; never raises.

    >>> type_name(ValueError)
    'ValueError'
    """
    for descriptor in (_TYPE_QUALNAME, _TYPE_NAME):
        try:
            name = _plain(descriptor.__get__(cls))
        except KeyboardInterrupt:
            raise
        except BaseException:
            continue
        if name:
            return _cut(name, MAX_TEXT)
    return "<unnamed type>"


def safe_text(obj: Any, *, limit: int = MAX_TEXT, use_str: bool = False) -> str:
    """``repr(obj)`` (``str(obj)`` with ``use_str``), or a placeholder naming what went wrong.

    Never raises (except ``KeyboardInterrupt``): a ``__repr__`` that raises, returns a
    non-string or a string subclass is handled, and the text is cut to ``limit``
    characters.

    >>> class Bomb:
    ...     def __repr__(self):
    ...         raise RuntimeError("no")
    >>> safe_text(Bomb())
    '<Bomb object; repr() raised RuntimeError>'
    >>> safe_text("x" * 100, limit=40)
    "'xxxxxxxxxxxxxxxxxxx... (102 characters)"
    """
    how = "str" if use_str else "repr"
    try:
        text = _plain(str(obj) if use_str else repr(obj))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return _cut(f"<{type_name(type(obj))} object; {how}() raised {type_name(type(exc))}>", limit)
    if text is None:  # pragma: no cover - str() and repr() only return str (subclasses)
        return f"<{type_name(type(obj))} object; {how}() returned a non-string>"
    return _cut(text, limit)


_OURS = str(Path(__file__).resolve().parents[1]) + os.sep
"""Frames in files under this directory (``properties/``) are the checker's own: its calls
into user code, and its hooks that run inside user code (the dtype spy of the sequence
checker wraps every torch call), so they are not where the user's error is."""


def _last_frame(exc: BaseException) -> str:
    """`` (at file:line in function)``: the innermost frame of the traceback that is not the
    checker's own (:data:`_OURS`), or the innermost one when every frame is ours."""
    try:
        tb = _TRACEBACK.__get__(exc)
        if tb is None:
            return ""
        chosen = last = tb
        found = False
        while tb is not None:
            if not tb.tb_frame.f_code.co_filename.startswith(_OURS):
                chosen, found = tb, True
            last = tb
            tb = tb.tb_next
        if not found:
            chosen = last
        code = chosen.tb_frame.f_code
        return f" (at {code.co_filename}:{chosen.tb_lineno} in {code.co_name})"
    except KeyboardInterrupt:
        raise
    except BaseException:
        return ""


MAX_REMEMBERED = 64
"""Texts of exceptions kept by :func:`remember_text` (the oldest is forgotten first)."""

_REMEMBERED: dict[int, tuple[BaseException, str]] = {}


def remember_text(exc: BaseException) -> str:
    """:func:`exception_text` of ``exc``, computed now and returned by later calls for ``exc``.

    The command line calls it while a call's time limit still runs, so that an exception whose
    ``__str__`` never returns is a timeout of that call, not a hang of the checker later.

    >>> class Once(Exception):
    ...     calls = 0
    ...     def __str__(self):
    ...         Once.calls += 1
    ...         return "text"
    >>> exc = Once()
    >>> remember_text(exc) == exception_text(exc) == "Once: text", Once.calls
    (True, 1)
    """
    text = exception_text(exc)
    while len(_REMEMBERED) >= MAX_REMEMBERED:
        _REMEMBERED.pop(next(iter(_REMEMBERED)))
    _REMEMBERED[id(exc)] = (exc, text)
    return text


def exception_text(exc: BaseException) -> str:
    """``"Type: message (at file:line in function)"`` for an exception, the innermost frame.

    Never raises (except ``KeyboardInterrupt``): an exception whose ``__str__`` raises is
    described by its arguments, or by a placeholder.

    >>> class Odd(Exception):
    ...     def __str__(self):
    ...         raise TypeError("nope")
    >>> exception_text(Odd("a", 1))
    "Odd: ('a', 1) (__str__ of the exception raised TypeError)"
    >>> exception_text(ValueError("bad value"))
    'ValueError: bad value'
    """
    known = _REMEMBERED.get(id(exc))
    if known is not None and known[0] is exc:
        return known[1]
    name = type_name(type(exc))
    try:
        message = _plain(str(exc))
    except KeyboardInterrupt:
        raise
    except BaseException as failure:
        why = f"__str__ of the exception raised {type_name(type(failure))}"
        try:
            args = BaseException.__dict__["args"].__get__(exc)
            shown = safe_text(args if len(args) != 1 else args[0])
            message = f"{shown} ({why})"
        except KeyboardInterrupt:
            raise
        except BaseException:
            message = f"<{why}>"
    text = f"{name}: {_cut(message, MAX_TEXT)}" if message else name
    return text + _last_frame(exc)


def name_of(fn: Any) -> str:
    """A display name for a callable: ``__qualname__``, ``__name__``, else its (safe) repr.

    Never raises (except ``KeyboardInterrupt``), whatever the attribute lookups do.

    >>> name_of(len), name_of(type_name)
    ('len', 'type_name')
    >>> class Sly:
    ...     def __getattr__(self, name):
    ...         raise RuntimeError(name)
    ...     def __repr__(self):
    ...         return "Sly()"
    >>> name_of(Sly())
    'Sly()'
    """
    for attribute in ("__qualname__", "__name__"):
        try:
            value = _plain(getattr(fn, attribute, None))
        except KeyboardInterrupt:
            raise
        except BaseException:
            continue
        if value:
            return _cut(value, MAX_TEXT)
    return safe_text(fn)


class UserCodeError(Exception):
    """User code raised (or tried to exit): what it raised, as text that is safe to print.

    ``text`` is :func:`exception_text` of the original exception; ``type_name`` the name of
    its class and ``exc_type`` the class itself; ``kind`` is ``"exited"`` for ``SystemExit``
    (``sys.exit`` inside user code) and ``"raised"`` for anything else; ``original`` is the
    exception object (its frames stay alive as long as this error does).
    """

    def __init__(self, original: BaseException) -> None:
        self.original = original
        self.exc_type: type[BaseException] = type(original)
        self.type_name = type_name(self.exc_type)
        self.text = exception_text(original)
        self.kind = "exited" if issubclass(self.exc_type, SystemExit) else "raised"
        super().__init__(self.text)

    def is_instance(self, cls: type[BaseException]) -> bool:
        """Whether the original exception is a ``cls`` (by its real class, not ``__class__``)."""
        return issubclass(self.exc_type, cls)

    @property
    def describe(self) -> str:
        """``raised X: ...`` or ``called sys.exit (SystemExit: 0)``, for a sentence after "it"."""
        if self.kind == "exited":
            return (
                f"tried to exit the process ({self.text}); a gradient estimator must return, "
                "not call sys.exit/exit/quit"
            )
        return f"raised {self.text}"


class DescriptorCapture:
    """What is written to a file descriptor (1: standard output) while a block runs.

    ``print`` goes through ``sys.stdout``, which ``contextlib.redirect_stdout`` catches;
    ``os.write(1, ...)`` and C code write to the descriptor itself, which only pointing the
    descriptor elsewhere catches.  Each block points ``fd`` at a private temporary file and back
    (a few system calls); :attr:`text` is what the last block wrote (at most :data:`MAX_TEXT`
    bytes are read).  Where the descriptor cannot be duplicated (no standard output at all)
    nothing is captured.

    >>> capture = DescriptorCapture()
    >>> with capture:
    ...     _ = os.write(1, b"raw")
    >>> capture.text
    'raw'
    """

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self.text = ""
        self._file: Any = None
        self._saved: int | None = None

    def __enter__(self) -> DescriptorCapture:
        self.text = ""
        try:
            self._saved = os.dup(self.fd)
            if self._file is None:
                self._file = tempfile.TemporaryFile()
            os.dup2(self._file.fileno(), self.fd)
        except OSError:
            if self._saved is not None:
                os.close(self._saved)
            self._saved = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        os.dup2(self._saved, self.fd)
        os.close(self._saved)
        self._saved = None
        f = self._file
        if os.fstat(f.fileno()).st_size:
            f.seek(0)
            self.text = f.read(MAX_TEXT).decode("utf-8", errors="replace")
            f.seek(0)
            f.truncate()


def call_user(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)``; anything it raises except ``KeyboardInterrupt`` becomes :class:`UserCodeError`.

    ``Exception``, any ``BaseException`` subclass, ``GeneratorExit`` and ``SystemExit``
    (``sys.exit`` in user code) are all caught; ``KeyboardInterrupt`` propagates so that
    Ctrl-C still stops the run.

    >>> call_user(sum, [1, 2])
    3
    >>> try:
    ...     call_user(int, "x")
    ... except UserCodeError as err:
    ...     print(err.kind, err.type_name)
    raised ValueError
    """
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise UserCodeError(exc) from None


TORCH_MODES = (
    "grad mode",
    "default dtype",
    "anomaly mode (and its check_nan)",
    "deterministic algorithms (and warn_only)",
    "number of threads",
)
"""torch's process-wide modes a user call may change, set back after each region of user code
(:func:`kept_torch_modes`).  Not the default device: ``torch.get_default_device`` alone
costs ~26 us, a tenth of a guarded call, and a CPU-only check runs on the CPU whatever it says."""


_GETTERS: list[tuple[Callable[[], Any], ...]] = []
"""torch's getters of :data:`TORCH_MODES`, bound once (looking them up costs more than calling them)."""


def _torch_modes(torch: Any) -> tuple[Any, ...]:
    if not _GETTERS:
        _GETTERS.append(
            (
                torch.is_grad_enabled,
                torch.get_default_dtype,
                torch.is_anomaly_enabled,
                torch.is_anomaly_check_nan_enabled,
                torch.are_deterministic_algorithms_enabled,
                torch.is_deterministic_algorithms_warn_only_enabled,
                torch.get_num_threads,
            )
        )
    g = _GETTERS[0]
    return (g[0](), g[1](), g[2](), g[3](), g[4](), g[5](), g[6]())


def _restore_torch_modes(torch: Any, saved: tuple[Any, ...]) -> None:
    now = _torch_modes(torch)
    if now == saved:
        return
    grad, dtype, anomaly, check_nan, deterministic, warn_only, threads = saved
    if now[0] != grad:
        torch.set_grad_enabled(grad)
    if now[1] != dtype:
        torch.set_default_dtype(dtype)
    if now[2:4] != (anomaly, check_nan):
        torch.set_anomaly_enabled(anomaly, check_nan)
    if now[4:6] != (deterministic, warn_only):
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    if now[6] != threads:
        torch.set_num_threads(threads)


class kept_torch_modes:  # named as a function: with kept_torch_modes(): ...
    """Run a region of user code, then set torch's global modes (:data:`TORCH_MODES`) back.

    Once per region (a guarded call, or a loop of calls), not per call; a no-op when torch
    has not been imported (then no user code before the region can have changed a mode).
    Without it a loss that called ``torch.set_grad_enabled(False)`` (an error verdict
    itself) left grad mode off, and every later check in the process blamed a correct
    loss with "error (no-grad)" (issue 15, F2).  A class, not a generator: it runs around
    every guarded call.

    >>> with kept_torch_modes():
    ...     pass
    """

    __slots__ = ("_saved", "_torch")

    def __enter__(self) -> None:
        self._torch = torch = sys.modules.get("torch")
        self._saved = None if torch is None else _torch_modes(torch)

    def __exit__(self, *exc: object) -> None:
        if self._torch is not None and self._saved is not None:
            _restore_torch_modes(self._torch, self._saved)


def replay_detail(flaky: str, *, outcome: str, inputs: str, advice: str = "") -> str:
    """The ``nondeterministic`` error's detail when Hypothesis replayed a problem and the
    user's function gave another answer (both checkers; ``flaky`` names Hypothesis's error).

    >>> print(replay_detail("Flaky", outcome="results", inputs="the batch"))
    ... # doctest: +NORMALIZE_WHITESPACE
    gave different results when Hypothesis replayed the same problem (Flaky); the exact
    checker needs a deterministic function of the batch
    """
    return (
        f"gave different {outcome} when Hypothesis replayed the same problem ({flaky}); "
        f"the exact checker needs a deterministic function of {inputs}{advice}"
    )


__all__ = [
    "MAX_TEXT",
    "DescriptorCapture",
    "UserCodeError",
    "call_user",
    "exception_text",
    "name_of",
    "remember_text",
    "replay_detail",
    "safe_text",
    "type_name",
]
