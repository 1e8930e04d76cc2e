"""Config nodes -> objects, with a one-line error that names the config key and its value
when the class refuses them (a non-numeric learning rate, an unknown Trainer argument, ...).
What torch, Lightning or a logger raise while being built would otherwise reach the user as
their traceback."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from seqlm.errors import SeqlmError


def as_dict(node: Any) -> dict:
    """A config node (or mapping) as a plain, resolved dict."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)


def _allowed(annotation: Any) -> tuple[type, ...] | None:
    """The types a parameter annotation accepts, or ``None`` where it says too little to check
    (``Any``, ``Literal``, a string, a type variable)."""
    origin = typing.get_origin(annotation)
    if annotation is type(None):
        return (type(None),)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed(a) for a in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else sum(parts, ())
    if origin is tuple:
        return (tuple, list)  # a YAML list stands for a tuple
    if origin is not None:
        return (origin,) if isinstance(origin, type) else None
    if isinstance(annotation, type) and annotation is not object:
        return (float, int) if annotation is float else (annotation,)
    return None


def check_types(key: str, target: Any, options: dict, shown: str) -> None:
    """Refuse an option whose value is not of a type its parameter's annotation names
    (``lr='fast'``, ``max_epochs='many'``): torch and Lightning often accept it, then fail
    much later with a message that names neither the key nor the value."""
    try:
        init = target.__init__ if isinstance(target, type) else target
        hints = typing.get_type_hints(init)
    except Exception:  # annotations that do not resolve here: nothing to check against
        return
    for name, value in options.items():
        allowed = _allowed(hints[name]) if name in hints else None
        if allowed is not None and not isinstance(value, allowed):
            names = " or ".join(
                sorted({"None" if t is type(None) else t.__name__ for t in allowed})
            )
            raise SeqlmError(f"{key}.{name}={value!r}: {shown} expects {names} for {name}")


def _unknown(target: Any, options: dict) -> list[str]:
    """Options that are no argument of ``target`` at all."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    return [name for name in options if name not in params]


def refusal(key: str, node: Any, exc: BaseException) -> SeqlmError:
    """The one-line error for ``node`` (at config ``key``) refused with ``exc``."""
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, SeqlmError):
        return exc
    options = {k: v for k, v in as_dict(node).items() if not k.startswith("_")}
    target = str(as_dict(node).get("_target_", "?"))
    try:
        suspects = _unknown(get_object(target), options)
    except Exception:  # the target itself cannot be imported: that is the error
        suspects = []
    named = ", ".join(f"{key}.{k}={options[k]!r}" for k in suspects) or key
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SeqlmError(f"{named}: {target} refused it ({why})")


def build(key: str, node: Any, *args: Any, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; for a ``_partial_`` node, also the call with ``args``
    (an optimizer's parameters, a scheduler's optimizer)."""
    plain = as_dict(node)
    try:
        target = get_object(str(plain.get("_target_")))
    except Exception as e:
        raise refusal(key, node, e) from e
    options = {k: v for k, v in plain.items() if not k.startswith("_")}
    check_types(key, target, options, str(plain["_target_"]))
    try:
        obj = instantiate(node, **kwargs)
        return obj(*args) if args else obj
    except Exception as e:
        raise refusal(key, node, e) from e
