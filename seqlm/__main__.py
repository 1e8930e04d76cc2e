"""``python -m seqlm COMMAND [overrides]``: a thin dispatch to Hydra and the commands."""

from __future__ import annotations

import importlib
import os
import sys

from seqlm.cli.overrides import checked, hydra_overrides
from seqlm.commands import COMMANDS
from seqlm.errors import BUG, SeqlmError, user_error
from seqlm.training.launch import COMMAND_ENV, worker_argv
from seqlm.training.quiet import silence_known_notices


def fail(message: str) -> None:
    print(f"seqlm: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    argv = worker_argv(list(sys.argv[1:] if argv is None else argv), COMMANDS)
    if not argv or argv[0] in ("-h", "--help"):
        from seqlm.cli.help import overview

        print(overview())
        return
    command, overrides = argv[0], hydra_overrides(argv[0], argv[1:])
    if command not in COMMANDS:
        fail(f"unknown command {command!r}; one of {', '.join(COMMANDS)} (python -m seqlm --help)")
    if any(a in ("-h", "--help") for a in argv[1:]):
        from seqlm.cli.help import page

        print(page(command))
        return
    debug = any(a in ("debug=true", "debug=True") for a in overrides)
    try:
        overrides = checked(command, overrides)
    except SeqlmError as e:
        fail(str(e))

    import hydra
    from omegaconf import OmegaConf

    from seqlm.runs.rundir import discard, new_run_dir, run_name  # numpy: not for --help

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
            if err is None and not debug:
                print(BUG, file=sys.stderr)
            if err is None or debug:
                raise
            if run_dir is not None:
                discard(run_dir)
            fail(str(err))

    # Hydra reads the overrides from sys.argv. Lightning's DDP launcher re-runs the program
    # for every other device: ``python -m seqlm`` when started so, else ``python sys.argv[0]``
    # (the console script, which must stay a path), with sys.argv[1:] (plus hydra.run.dir).
    # The command reaches those workers through the environment, which they inherit.
    os.environ[COMMAND_ENV] = command
    sys.argv = [sys.argv[0], *overrides]
    task()


if __name__ == "__main__":
    main()
