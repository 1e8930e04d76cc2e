"""User-facing errors: the CLI prints them as one line and exits with code 2."""

import math


class SeqlmError(Exception):
    """Bad input from the user (a file, an option, a checkpoint). Its message is one line that
    names what is wrong; the CLI prints it without a traceback unless ``debug=true``."""


class Diverged(SeqlmError):
    """Training stopped because the loss or the gradient norm stopped being a finite number, or
    the loss rose far above the uniform guess (an explosion the tutorial's clipping would have
    prevented). Raised before the optimizer applies the step, so the weights and every
    checkpoint stay finite."""

    def __init__(self, step: int, lr: float, loss: float, norms: list[float], why: str = ""):
        self.step, self.lr, self.loss, self.norms = step, lr, loss, norms
        finite = sorted((n for n in norms if math.isfinite(n)), reverse=True)
        largest = ", ".join(f"{n:.3g}" for n in finite[:3]) or "none finite"
        last = norms[-1] if norms else float("nan")
        why = f" ({why})" if why else ""
        super().__init__(
            f"training diverged at step {step}: loss {loss:.4g}{why}, gradient norm {last:.4g} "
            f"at lr {lr:g} (largest recent finite norms: {largest}); clip the gradient norm "
            f"(trainer.gradient_clip_val=0.25) or lower the learning rate "
            f"(optim.optimizer.lr={lr / 10:g})"
        )

    def metrics(self) -> dict:
        """What metrics.json says of a diverged run."""
        return {
            "status": "diverged",
            "diverged/step": self.step,
            "diverged/lr": self.lr,
            "diverged/loss": self.loss,
            "diverged/grad_norms": [n if math.isfinite(n) else None for n in self.norms],
            "diverged/message": str(self),
        }


def user_error(exc: BaseException | None) -> SeqlmError | None:
    """The SeqlmError behind ``exc``: ``exc`` itself, or what it was raised *from* (Hydra's
    instantiate wraps a constructor's error so); a file that could not be written or read where
    seqlm's own writers do not reach (a logger's, a library's) is one line naming it too.
    Only the explicit cause is followed, never the exception that was being handled when
    ``exc`` happened (``__context__``): an error raised while handling a user's mistake is a
    bug, and must show its traceback rather than the earlier one-line message."""
    from ngram.files import REASONS

    while exc is not None:
        if isinstance(exc, SeqlmError):
            return exc
        if isinstance(exc, OSError) and exc.errno in REASONS and exc.filename:
            return SeqlmError(f"{exc.filename}: {REASONS[exc.errno]}")
        exc = exc.__cause__
    return None


BUG = (
    "seqlm: an unexpected error, not a mistake in the command line: please report it with the "
    "command and the traceback below (debug=true shows every frame)"
)
