"""``python -m seqlm COMMAND [overrides]``: a thin dispatch to Hydra and the commands."""

from __future__ import annotations

import importlib
import os
import sys

from seqlm.commands import COMMANDS
from seqlm.conf import CONF_DIR, is_group
from seqlm.errors import SeqlmError

COMMAND_ENV = "SEQLM_COMMAND"
USAGE = (
    f"usage: python -m seqlm {{{','.join(COMMANDS)}}} [key=value ...] [-m]\n"
    "       python -m seqlm compare RUN_DIR... [out=DIR]   (see README)"
)


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
        choices = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
        values = value.strip("[]").split(",") if value else []
        for v in values:
            if v.strip() and v.strip() not in choices:
                raise SeqlmError(f"{key}={v.strip()!r} is not one of {', '.join(choices)}")


def user_error(exc: BaseException) -> SeqlmError | None:
    """The SeqlmError behind ``exc``, also when Hydra's instantiate wrapped it."""
    while exc is not None:
        if isinstance(exc, SeqlmError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    relaunched = "LOCAL_RANK" in os.environ and os.environ.get(COMMAND_ENV) in COMMANDS
    if relaunched and (not argv or argv[0] not in COMMANDS):  # a DDP worker Lightning started
        argv.insert(0, os.environ[COMMAND_ENV])
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f"seqlm: error: unknown command {command!r}; one of {', '.join(COMMANDS)} "
            "(python -m seqlm --help)",
            file=sys.stderr,
        )
        sys.exit(2)
    if command == "compare":  # run directories come as positional arguments
        dirs = [a for a in overrides if "=" not in a and not a.startswith("-")]
        overrides = [a for a in overrides if a not in dirs]
        if dirs:
            quoted = ",".join("'" + d.replace("\\", "\\\\").replace("'", "\\'") + "'" for d in dirs)
            overrides.append(f"runs=[{quoted}]")
    debug = any(a in ("debug=true", "debug=True") for a in overrides)
    try:
        check_group_choices(overrides)
    except SeqlmError as e:
        print(f"seqlm: error: {e}", file=sys.stderr)
        sys.exit(2)

    import hydra

    module = importlib.import_module(f"seqlm.commands.{command}")

    @hydra.main(config_path="conf", config_name=command, version_base="1.3")
    def task(cfg):
        try:
            return module.run(cfg)
        except Exception as e:
            err = user_error(e)
            if err is None or debug:
                raise
            print(f"seqlm: error: {err}", file=sys.stderr)
            sys.exit(2)

    resume = [a.split("=", 1)[1] for a in overrides if a.startswith("resume=")]
    if (
        resume
        and resume[-1] not in ("", "null")
        and not any(a.startswith("hydra.run.dir=") for a in overrides)
    ):
        overrides.append(f"hydra.run.dir={resume[-1]}")  # a resumed run stays in its folder

    # Hydra reads the overrides from sys.argv. Lightning's DDP launcher re-runs this module
    # with sys.argv[1:] (plus hydra.run.dir) for every other device: the command reaches the
    # workers through the environment, which they inherit.
    os.environ[COMMAND_ENV] = command
    sys.argv = [f"{sys.argv[0]} {command}", *overrides]
    task()


if __name__ == "__main__":
    main()
