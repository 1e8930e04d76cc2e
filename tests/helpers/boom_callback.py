"""A callback with a bug (a KeyError when training starts): how seqlm shows a bug that is not
the user's mistake."""

import pytorch_lightning as pl


class Boom(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        {}["no such key"]
