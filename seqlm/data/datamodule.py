"""``LMData``: the ``CorpusData`` of a corpus as a Lightning data module, batched for the
model's layout (contiguous streams, or padded sentences for the cloze model)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from seqlm.data.batching import EvalStream, SentenceBatches, StreamLoader, TrainStream
from seqlm.data.corpusdata import LAYOUTS, CorpusData, make_corpus, prepared_data
from seqlm.errors import SeqlmError

__all__ = ["LAYOUTS", "LMData", "make_corpus", "prepared_data"]


class LMData(CorpusData, pl.LightningDataModule):
    """``CorpusData`` (its arguments) with the loaders a network trains and evaluates on."""

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        if self.trainer is not None:
            self.rank, self.world_size = self.trainer.global_rank, self.trainer.world_size
        if self.layout == "stream" and self.eval_batch_size < self.world_size:
            # each rank scores whole rows of the evaluation streams: a rank without a row
            # would have nothing to score (and more rows would change the figures)
            raise SeqlmError(
                f"data.eval_batch_size={self.eval_batch_size} is below the {self.world_size} "
                f"processes, which evaluate whole rows each: give data.eval_batch_size="
                f"{self.world_size} or more (a multiple of {self.world_size} keeps them even)"
            )

    # -- loaders -------------------------------------------------------------------------------
    def train_dataset(self):
        ids, eos = self.ids["train"], self.vocab.eos_id
        if self.layout == "sentences":
            return SentenceBatches(
                ids,
                eos,
                self.batch_size,
                shuffle=True,
                rank=self.rank,
                world_size=self.world_size,
                seed=self.seed,
            )
        return TrainStream(
            ids,
            eos,
            self.batch_size,
            self.bptt,
            self.rank,
            self.world_size,
            self.variable_bptt,
            self.seed,
        )

    def eval_dataset(self, split: str):
        ids, eos = self.ids[split], self.vocab.eos_id
        if self.layout == "sentences":
            return SentenceBatches(
                ids,
                eos,
                self.eval_batch_size,
                shuffle=False,
                extras=self.extras(split),
                rank=self.rank,
                world_size=self.world_size,
            )
        rows = slice(self.rank, None, self.world_size)
        return EvalStream(ids, eos, self.eval_batch_size, self.bptt, self.extras(split), rows)

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        if self.trainer is not None:
            ds.set_epoch(self.trainer.current_epoch)
        if isinstance(ds, TrainStream):
            self.stream = ds
            return StreamLoader(ds, batch_size=None)
        return DataLoader(ds, batch_size=None)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Called for the batch about to be trained on (not for one merely prefetched), so the
        stream's position counts trained windows only."""
        if "window" in batch:
            self.stream.trained = batch.pop("window") + 1
        return batch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_dataset("valid"), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_dataset("test"), batch_size=None)
