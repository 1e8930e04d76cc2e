"""The command line checked before anything runs: values quoted the way Hydra's grammar needs,
unknown keys named with the closest known one, values of the wrong type refused. All of it
before Hydra makes a run directory or any data is read; each mistake gets one line.

A value that Hydra's override grammar cannot read unquoted (``arpa_unk=<ptb-unk>`` after the
shell has eaten the quotes, ``prompt=宝玉道``) is quoted here, so that it reaches the command as the
string the user typed.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from seqlm.commands import POSITIONAL
from seqlm.conf import choices, is_group, preset_target
from seqlm.errors import SeqlmError
from seqlm.training.launch import worker_run_dir

SWEEP = ("-m", "--multirun")
TYPED = (
    "model.",
    "data.",
    "optim.",
)  # seqlm's own options; Lightning checks its own (devices=auto)


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def quoted(args: list[str]) -> list[str]:
    """Each ``key=value`` whose value Hydra's grammar rejects, with the value quoted as a
    string; everything else as it was."""
    from hydra.errors import HydraException

    parser, out = _parser(), []
    for arg in args:
        key, eq, value = arg.partition("=")
        if arg.startswith("-") or not eq or value[:1] in ("'", '"', "[", "{"):
            out.append(arg)
            continue
        try:
            parser.parse_overrides([arg])
        except HydraException:
            escaped = value.replace("\\", "\\\\").replace("'", "\\'")
            arg = f"{key}='{escaped}'"
        out.append(arg)
    return out


def checked(command: str, args: list[str]) -> list[str]:
    """Every check of the command line, in the order a user's mistake is most plainly named:
    a group's option, a network's option asked of an n-gram, the run directory, then the keys
    and types of the composed config. Returns the overrides quoted for Hydra."""
    check_group_choices(args)
    check_network_options(args)
    check_run_dir(command, args)
    args = quoted(args)
    check(command, args)
    return args


def check(command: str, args: list[str]) -> None:
    """Compose the config as Hydra will, and refuse in one line what would fail later: an
    unknown key (with the closest known key), a key added with ``+`` that its target does not
    take, every rule of a network's options the overrides touch (``seqlm.options``), and for
    other targets a number or boolean of the preset default's type (their annotations are
    checked when they are built). A sweep (``-m``) is checked with the first value of each
    swept key. A network's checks import no torch (``+trainer.x`` imports Lightning to read
    its signature)."""
    import functools

    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    if any(a.startswith("-") and a not in SWEEP for a in args):
        return  # --help, --cfg job, --info ...: Hydra's own flags, nothing is run
    sweep = any(a in SWEEP for a in args)
    plain = [_first_value(a) if sweep else a for a in args if a not in SWEEP]
    plain = [a for a in plain if not a.startswith(("hydra.", "hydra/"))]
    groups = [a for a in plain if "=" in a and "." not in a.partition("=")[0].lstrip("+~")]

    with initialize_config_module("seqlm.conf", version_base="1.3"):

        @functools.cache
        def base():  # the presets without the dotted overrides: for suggestions and defaults
            return compose(command, overrides=[g for g in groups if g[:1] not in "+~"])

        try:
            cfg = compose(command, overrides=plain)
        except HydraException as e:
            try:
                base()
            except HydraException:
                return  # a mistake in a group choice: the check of choices has its own message
            raise SeqlmError(_unknown_key(e, plain, base())) from None
        touched = set()
        for arg in plain:
            key, eq, _ = arg.partition("=")
            if not eq or key.startswith("~") or "." not in key.lstrip("+"):
                continue
            key = key.lstrip("+")
            if _network(cfg, key):
                touched.add(key.partition(".")[0])
            if arg.startswith("+"):
                _check_added(key, cfg, base)
            elif key.startswith(TYPED) and not _network(cfg, key):
                _check_default_type(key, cfg, base)
    from omegaconf import OmegaConf

    from seqlm.options import OPTIONS_OF

    for top in sorted(touched):  # every rule of a network's options (no torch imported)
        OPTIONS_OF[cfg[top]["_target_"]].of(OmegaConf.to_container(cfg[top], resolve=True))


def _network(cfg, key: str) -> bool:
    """Whether ``key`` is (in) a network's config, whose options ``seqlm.options``
    checks; the other targets' annotations are checked when they are built (importing them
    here would cost the command line torch's and Lightning's start-up)."""
    from seqlm.options import OPTIONS_OF

    node = cfg.get(key.partition(".")[0])
    return node is not None and hasattr(node, "get") and node.get("_target_") in OPTIONS_OF


def _check_default_type(key: str, cfg, base) -> None:
    """A number or a boolean where the preset has one: the value must be of its type (``null``
    is always allowed, and a ``null`` default takes anything). The target's own annotations
    are checked again when it is built (``seqlm.build``), where it is imported anyway."""
    from omegaconf import OmegaConf

    from seqlm.validation import type_problem

    default = OmegaConf.select(base(), key, throw_on_missing=False)
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    plain = type(default) in (bool, int, float) and value is not None
    problem = type_problem(type(default), value) if plain else None
    if problem:
        raise SeqlmError(f"{key}={value!r}: {problem} (the default is {default!r})")


def _first_value(arg: str) -> str:
    """``key=a,b,c`` -> ``key=a`` (a sweep's first job); lists and quoted values kept."""
    key, eq, value = arg.partition("=")
    if not eq or value[:1] in ("[", "{", "'", '"') or "," not in value:
        return arg
    return f"{key}={value.split(',')[0]}"


def _all_keys(node, prefix: str = "") -> list[str]:
    """Every key of a config, dotted (``model.hidden_size``), without resolving a value."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    out = []
    if isinstance(node, dict):
        for k, child in node.items():
            out.append(f"{prefix}{k}")
            out.extend(_all_keys(child, f"{prefix}{k}."))
    return out


def _suggest(key: str, base) -> str:
    known = [k for k in _all_keys(base) if not k.startswith("hydra")]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"; did you mean {near[0]}?" if near else ""


def _unknown_key(error: Exception, args: list[str], base) -> str:
    """One line for Hydra's "Could not override 'x.y'" (or "Could not append")."""
    text = str(error)
    for arg in args:
        key = arg.partition("=")[0].lstrip("+~")
        if f"'{key}'" in text or f"'{arg}'" in text:
            if arg.startswith("+") and key in _all_keys(base):
                return (
                    f"+{key}: the key exists already; '+' only adds a key that is not there: "
                    f"write {arg[1:]}"
                )
            return f"{key}: no such key{_suggest(key, base)}"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"the overrides do not compose: {first}"


def _check_added(key: str, cfg, base) -> None:
    """``+group.key=value``: the group's target must take ``key`` (or any keyword). ``base``:
    the presets' config, composed when a suggestion needs it."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    from seqlm.validation import parameters, takes_any

    parent, _, name = key.rpartition(".")
    if name.startswith("_"):
        return  # Hydra's own (_target_, _partial_, ...)
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else None
    target = node.get("_target_") if node is not None and hasattr(node, "get") else None
    if target is None:
        return
    from seqlm.options import OPTIONS_OF

    try:  # a network's options are named without importing it (and torch)
        obj = OPTIONS_OF.get(str(target)) or get_object(str(target))
        if name in parameters(obj) or takes_any(obj):
            return
    except (ValueError, TypeError, ImportError, AttributeError):
        return
    raise SeqlmError(f"+{key}: {target} takes no option {name!r}{_suggest(key, base())}")


def hydra_overrides(command: str, args: list[str]) -> list[str]:
    """The command line as Hydra overrides: run directories (``compare``, ``gradients``)
    become ``runs=[...]``;
    a resumed run stays in its folder (``hydra.run.dir``)."""
    if command in POSITIONAL:  # run directories come as positional arguments
        dirs = [a for a in args if "=" not in a and not a.startswith("-")]
        args = [a for a in args if a not in dirs]
        if dirs:
            quoted = ",".join("'" + d.replace("\\", "\\\\").replace("'", "\\'") + "'" for d in dirs)
            args.append(f"runs=[{quoted}]")
    resume = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
    if (
        resume
        and resume[-1] not in ("", "null")
        and not any(a.startswith("hydra.run.dir=") for a in args)
    ):
        args.append(f"hydra.run.dir={resume[-1]}")
    return [*args, *worker_run_dir(args)]


def check_group_choices(args: list[str]) -> None:
    """Refuse an unknown ``group=option`` before Hydra does, in one line that lists the choices
    (Hydra's own message is long and exits with 1)."""
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if not is_group(key):
            continue
        known = choices(key)
        for v in (x.strip() for x in (value.strip("[]").split(",") if value else [])):
            if v and v not in known:
                raise SeqlmError(f"{key}={v!r} is not one of {', '.join(known)}")


def check_network_options(args: list[str]) -> None:
    """Refuse a regulariser or NT-ASGD asked of an n-gram model in one line (Hydra's own
    message for an unknown key is five lines and does not say why)."""
    models = [a.partition("=")[2] for a in args if a.startswith("model=")]
    if not models or (target := preset_target("model", models[-1])) is None:
        return
    from seqlm.options import REGULARISERS
    from seqlm.scorers import family_of

    if family_of({"_target_": target}) != "ngram":
        return

    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        asked = key.startswith("model.") and key.removeprefix("model.") in REGULARISERS
        asked |= (key == "optim" and value == "nt_asgd") or key.startswith("optim.nonmono")
        if asked:
            raise SeqlmError(
                f"{arg}: regularisers and NT-ASGD are for networks; model={models[-1]} is an "
                "n-gram model (counts, no weights to drop or average)"
            )


RUN_DIR_COMMANDS = ("train", "mix", "rescore", "decode")  # those that write a run directory


def check_run_dir(command: str, overrides: list[str]) -> None:
    """Refuse, before any work, a run directory that cannot be written (a read-only file
    system, no permission): the given ``hydra.run.dir`` / ``hydra.sweep.dir``, or the current
    folder that ``outputs/`` goes in."""
    if command not in RUN_DIR_COMMANDS:
        return
    given = [
        a.split("=", 1)[1]
        for a in overrides
        if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
    ]
    target = Path(given[-1]).expanduser() if given else Path.cwd()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK):
        return
    read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    why = "the file system is read-only" if read_only else "permission denied"
    raise SeqlmError(f"{target}: cannot write the run directory ({why})")
