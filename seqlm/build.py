"""Config nodes -> objects, with a one-line error that names the config key and its value
when the class refuses them (a non-numeric learning rate, an unknown Trainer argument, ...).
What torch, Lightning or a logger raise while being built would otherwise reach the user as
their traceback."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from seqlm.errors import SeqlmError
from seqlm.validation import check_types, parameters, takes_any


def as_dict(node: Any) -> dict:
    """A config node (or mapping) as a plain, resolved dict."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)


def _unknown(target: Any, options: dict) -> list[str]:
    """Options that are no argument of ``target`` at all."""
    try:
        return [] if takes_any(target) else [n for n in options if n not in parameters(target)]
    except Exception:  # annotations that do not resolve here
        return []


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


def check_options(key: str, target: Any, node: Any) -> None:
    """Every rule ``target``'s options must follow, refused in one line: its ``Options``
    (a network's typed config) when it has one, else the types its signature names."""
    plain = as_dict(node)
    options = getattr(target, "Options", None)
    if options is not None:  # the target's own arguments (a network's vocab_size) aside
        params = inspect.signature(target).parameters.values()
        own = {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        options.of({k: v for k, v in plain.items() if k not in own})
        return
    shown = str(plain.get("_target_", getattr(target, "__name__", target)))
    check_types(key, target, {k: v for k, v in plain.items() if not k.startswith("_")}, shown)


def check_node(key: str, node: Any) -> None:
    """``check_options`` of a config node with a ``_target_`` (one that does not import is
    left to ``build``, which names it)."""
    try:
        target = get_object(str(as_dict(node).get("_target_")))
    except Exception:
        return
    check_options(key, target, node)


def build(key: str, node: Any, *args: Any, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; for a ``_partial_`` node, also the call with ``args``
    (an optimizer's parameters, a scheduler's optimizer)."""
    plain = as_dict(node)
    try:
        target = get_object(str(plain.get("_target_")))
    except Exception as e:
        raise refusal(key, node, e) from e
    check_options(key, target, plain)
    try:
        obj = instantiate(node, **kwargs)
        return obj(*args) if args else obj
    except Exception as e:
        raise refusal(key, node, e) from e
