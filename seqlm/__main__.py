"""``python -m seqlm COMMAND [overrides]``: a thin dispatch to Hydra and the commands."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

from seqlm.commands import COMMANDS, POSITIONAL
from seqlm.conf import choices, is_group, preset_target
from seqlm.errors import SeqlmError
from seqlm.overrides import check, quoted
from seqlm.quiet import silence_known_notices
from seqlm.training.launch import COMMAND_ENV, worker_argv


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
    from seqlm.scorers import family_of

    if family_of({"_target_": target}) != "ngram":
        return
    from seqlm.models.regularisers import OPTIONS

    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        asked = key.startswith("model.") and key.removeprefix("model.") in OPTIONS
        asked |= (key == "optim" and value == "nt_asgd") or key.startswith("optim.nonmono")
        if asked:
            raise SeqlmError(
                f"{arg}: regularisers and NT-ASGD are for networks; model={models[-1]} is an "
                "n-gram model (counts, no weights to drop or average)"
            )


def user_error(exc: BaseException | None) -> SeqlmError | None:
    """The SeqlmError behind ``exc``, also when Hydra's instantiate wrapped it; a file that
    could not be written or read where seqlm's own writers do not reach (a logger's, a
    library's) is one line naming it too."""
    from ngram.files import REASONS

    while exc is not None:
        if isinstance(exc, SeqlmError):
            return exc
        if isinstance(exc, OSError) and exc.errno in REASONS and exc.filename:
            return SeqlmError(f"{exc.filename}: {REASONS[exc.errno]}")
        exc = exc.__cause__ or exc.__context__
    return None


LEFT_BY_A_FAILED_RUN = {"__main__.log", ".hydra", "config.yaml", "vocab.json"}


def new_run_dir() -> Path | None:
    """Hydra's output directory if it was made for this command (nothing in it but what Hydra
    just wrote, and not the current directory), else None."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.resolve() == Path.cwd().resolve() or not run_dir.is_dir():
        return None
    return run_dir if {p.name for p in run_dir.iterdir()} <= {"__main__.log", ".hydra"} else None


def discard(run_dir: Path) -> None:
    """Remove the directory of a command that failed before it produced anything: only what
    such a run writes, and only if nothing else is there."""
    entries = list(run_dir.iterdir())
    if any(p.name not in LEFT_BY_A_FAILED_RUN for p in entries):
        return
    for p in entries:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    run_dir.rmdir()


def run_name(model: str | None, experiment: str | None = None) -> str:
    """``outputs/DATE/TIME_NAME``: the experiment's name (``experiment=awd_lstm_ptb``), else the
    model's (``lstm``)."""
    return str(experiment if experiment not in (None, "null", "") else model)


RUN_DIR_COMMANDS = ("train", "mix", "rescore")  # those that write a run directory


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


def fail(message: str) -> None:
    print(f"seqlm: error: {message}", file=sys.stderr)
    sys.exit(2)


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
    return args


def main(argv: list[str] | None = None) -> None:
    argv = worker_argv(list(sys.argv[1:] if argv is None else argv), COMMANDS)
    if not argv or argv[0] in ("-h", "--help"):
        from seqlm.help import overview

        print(overview())
        return
    command, overrides = argv[0], hydra_overrides(argv[0], argv[1:])
    if command not in COMMANDS:
        fail(f"unknown command {command!r}; one of {', '.join(COMMANDS)} (python -m seqlm --help)")
    if any(a in ("-h", "--help") for a in argv[1:]):
        from seqlm.help import page

        print(page(command))
        return
    debug = any(a in ("debug=true", "debug=True") for a in overrides)
    try:
        check_group_choices(overrides)
        check_network_options(overrides)
        check_run_dir(command, overrides)
        overrides = quoted(overrides)
        check(command, overrides)
    except SeqlmError as e:
        fail(str(e))

    import hydra
    from omegaconf import OmegaConf

    # a run directory is named after its experiment preset if it has one, else its model
    OmegaConf.register_new_resolver("seqlm_run_name", run_name, replace=True)
    silence_known_notices()
    module = importlib.import_module(f"seqlm.commands.{command}")

    @hydra.main(config_path="pkg://seqlm.conf", config_name=command, version_base="1.3")
    def task(cfg):
        run_dir = new_run_dir()
        try:
            return module.run(cfg)
        except Exception as e:
            err = user_error(e)
            if err is None or debug:
                raise
            if run_dir is not None:
                discard(run_dir)
            fail(str(err))

    # Hydra reads the overrides from sys.argv. Lightning's DDP launcher re-runs this module
    # with sys.argv[1:] (plus hydra.run.dir) for every other device: the command reaches the
    # workers through the environment, which they inherit.
    os.environ[COMMAND_ENV] = command
    sys.argv = [f"{sys.argv[0]} {command}", *overrides]
    task()


if __name__ == "__main__":
    main()
