"""One place for the rules an option's value must follow. What checks an option calls in here:
``build`` when a config node becomes an object, the constructors, ``train`` before the data is
read, and the command line before anything runs (``seqlm.cli.overrides``), so that a network's
option is refused by the same rule, in the same words, wherever it is first seen.

- **Which options a target takes, and their types**: ``parameters(target)``. A class with an
  ``Options`` dataclass (the networks: ``seqlm.options``) is described by its fields;
  anything else (an optimizer, Lightning's Trainer, a corpus) by its signature's annotations.
- **Values**: ``type_problem`` (the annotation's types), then the ``Options`` dataclass's own
  ``check`` (ranges, choices, options that must agree), run by ``Options.of``.

The command line does not import an optimizer's or the Trainer's module to read their
annotations (torch's and Lightning's start-up); there a number or boolean must be of the
preset default's type, and ``build`` applies the annotations when it makes them.

Only ``typing`` and the standard library: the command line's checks import nothing heavier
through here.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from typing import Any

from seqlm.errors import SeqlmError


def allowed(annotation: Any) -> tuple[type, ...] | None:
    """The types an annotation accepts, or ``None`` where it says too little to check
    (``Any``, ``Literal``, a string, a type variable)."""
    origin = typing.get_origin(annotation)
    if annotation is inspect.Parameter.empty:
        return None
    if annotation is type(None):
        return (type(None),)
    if origin in (typing.Union, types.UnionType):
        parts = [allowed(a) for a in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else sum(parts, ())
    if origin is tuple:
        return (tuple, list)  # a YAML list stands for a tuple
    if origin is not None:
        return (origin,) if isinstance(origin, type) else None
    if isinstance(annotation, type) and annotation is not object:
        return (float, int) if annotation is float else (annotation,)
    return None


def type_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` cannot be passed where ``annotation`` stands, or None. A bool is no
    number here (YAML's ``true`` for a size is a mistake), though Python counts it as one."""
    ok = allowed(annotation)
    if ok is None:
        return None
    number = (int in ok or float in ok) and bool not in ok
    if isinstance(value, ok) and not (number and isinstance(value, bool)):
        return None
    kinds = set(ok) - {type(None)}
    said = ["true or false"] if bool in kinds else []
    said += ["a number"] if float in kinds else ["an integer"] if int in kinds else []
    said += sorted(t.__name__ for t in kinds - {bool, int, float})
    return f"expected {' or '.join(said)}{' or null' if type(None) in ok else ''}"


def parameters(target: Any) -> dict[str, Any]:
    """Each option ``target`` names, with its annotation (``inspect.Parameter.empty`` where it
    has none); ``{}`` when it cannot be read. ``takes_any`` says whether it takes others too."""
    options = target if dataclasses.is_dataclass(target) else getattr(target, "Options", None)
    if dataclasses.is_dataclass(options):
        hints = typing.get_type_hints(options)
        empty = inspect.Parameter.empty
        return {f.name: hints.get(f.name, empty) for f in dataclasses.fields(options)}
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}
    try:
        init = target.__init__ if isinstance(target, type) else target
        hints = typing.get_type_hints(init)
    except Exception:  # annotations that do not resolve here: names only
        hints = {}
    return {
        name: hints.get(name, inspect.Parameter.empty)
        for name, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def takes_any(target: Any) -> bool:
    """Whether ``target`` takes keywords it does not name (``**options``) without an
    ``Options`` dataclass that names them all."""
    if dataclasses.is_dataclass(getattr(target, "Options", None)):
        return False
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params.values())


def required(target: Any) -> list[str]:
    """The options ``target`` cannot be built without (no default of its own)."""
    options = target if dataclasses.is_dataclass(target) else getattr(target, "Options", None)
    if dataclasses.is_dataclass(options):
        return [f.name for f in dataclasses.fields(options) if f.default is dataclasses.MISSING]
    params = inspect.signature(target).parameters
    return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and p.default is p.empty]


def check_types(key: str, target: Any, options: dict, shown: str) -> None:
    """Refuse an option whose value is not of a type its annotation names (``lr='fast'``,
    ``max_epochs='many'``): torch and Lightning often accept it, then fail much later with a
    message that names neither the key nor the value."""
    try:
        params = parameters(target)
    except Exception:  # annotations that do not resolve here: nothing to check against
        return
    for name, value in options.items():
        annotation = params.get(name, inspect.Parameter.empty)
        problem = type_problem(annotation, value)
        if problem:
            raise SeqlmError(f"{key}.{name}={value!r}: {problem} ({shown}'s {name})")


class Options:
    """The base of a model's typed, validated options (a dataclass of its config's keys):
    built, it has passed every rule. ``check`` holds the rules beyond the types."""

    key = "model"  # the config key its options live under, for the messages

    @classmethod
    def of(cls, node: Any):
        """The options from a config node (or mapping): unknown and missing keys, types, then
        ``check``, each refused in one line that names the key. Keys starting with ``_``
        (Hydra's ``_target_``) are not options."""
        if type(node).__name__ == "DictConfig":
            from omegaconf import OmegaConf

            node = OmegaConf.to_container(node, resolve=True)
        given = {k: v for k, v in dict(node).items() if not str(k).startswith("_")}
        names = [f.name for f in dataclasses.fields(cls)]
        for name in given:
            if name not in names:
                near = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
                hint = f"; did you mean {cls.key}.{near[0]}?" if near else ""
                raise SeqlmError(f"{cls.key}.{name}: no such option of {cls.__name__}{hint}")
        missing = [n for n in required(cls) if n not in given]
        if missing:
            raise SeqlmError(f"{cls.key} lacks {', '.join(missing)} ({cls.__name__})")
        return cls(**given)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) or type(value).__name__ == "ListConfig":
                object.__setattr__(self, f.name, list(value))  # as YAML wrote it: a list
                value = getattr(self, f.name)
            problem = type_problem(hints[f.name], value)
            if problem:
                raise SeqlmError(f"{self.key}.{f.name}={value!r}: {problem}")
        self.check()

    def check(self) -> None:
        """The rules beyond the types; each failure one ``SeqlmError`` naming the key."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
