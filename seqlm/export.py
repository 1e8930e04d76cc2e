"""A left-to-right network as ONNX files that speech runtimes load without Python, in the
contract of icefall's ``rnn_lm/export-onnx.py``, which sherpa-onnx reads (``online-rnn-lm.cc``,
``offline-rnn-lm.cc``):

- ``with-state.onnx``: inputs ``x`` (N, L) int64, ``h0`` and ``c0`` (num_layers, N, hidden)
  float32; outputs ``log_softmax`` (N, V) (after the last of the L tokens), ``next_h0``,
  ``next_c0``; read by position. sherpa-onnx builds zero states of shape (num_layers, 1,
  hidden) from the metadata, reads ``[[sos_id]]`` first, then one token at a time, and indexes
  ``log_softmax`` by the token id. seqlm's sentence start is the same: zeros, then ``<eos>``
  read (``sos_id`` = ``eos_id`` = seqlm's ``<eos>``).
- ``no-state.onnx``: inputs ``x`` (N, L) int64 without SOS/EOS and ``x_lens`` (N,); output
  ``nll`` (N,), the negative log-likelihood of each sentence, ``</s>`` included.

Cells: every left-to-right one. ``lstm`` and ``mogrifier`` carry ``(h, c)``; ``gru``, ``rnn``,
``mingru`` and ``minlstm`` carry ``h``, with a ``c0`` that passes through unchanged (metadata
``c0=unused``). The Mogrifier's and the minimal cells' loops over the tokens are traced as
TorchScript, so the files hold an ONNX ``Loop`` that runs any length (a traced Python loop would
be the example's steps unrolled). AWD-LSTM's layers of unequal sizes (``hidden_sizes``) share
one (num_layers, N, max size) tensor per kind: layer ``l`` reads and writes the first
``hidden_sizes[l]`` units of row ``l`` and leaves zeros in the rest, so the padding is exact
(metadata ``hidden_size`` is the largest, ``seqlm_hidden_sizes`` each). Refused in one line:
the fill-in-the-blank model (it reads both directions).

``tokens``: a recogniser's token table (``symbol id`` per line, as sherpa-onnx's tokens.txt):
its ids are mapped to the LM's vocabulary inside the graph (a constant gather on the input, one
on the output), so the recogniser's ids go in and come out; a symbol the LM does not know reads
and scores as ``<unk>``.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqlm.data.vocab import UNK, Vocab
from seqlm.errors import SeqlmError
from seqlm.models.recurrent import PAIRED, LayerStack

BOUNDARY = ("<sos/eos>", "</s>", "<eos>", "<s>", "<sos>")  # a recogniser's sentence marks
OPSET = 17


def exportable(net) -> None:
    """Refuse in one line a network these files cannot hold."""
    if getattr(net, "layout", "stream") != "stream":
        raise SeqlmError("export: a fill-in-the-blank (birnn) model has no left-to-right steps")


class States:
    """Where a network's state sits in the contract's two (num_layers, N, hidden) tensors:
    ``split`` makes the network's state of them, ``join`` them of the network's."""

    def __init__(self, net):
        rnn = net.rnn
        self.stack = isinstance(rnn, LayerStack)  # one module per layer, a state each
        self.paired = net.cell in PAIRED  # (h, c): lstm, mogrifier
        if self.stack:
            self.sizes = [layer.hidden_size for layer in rnn.layers]
        else:
            self.sizes = [rnn.hidden_size] * rnn.num_layers
        self.width = max(self.sizes)

    def split(self, h0, c0):
        if not self.stack:
            return (h0, c0) if self.paired else h0
        parts = []
        for layer, size in enumerate(self.sizes):
            h = h0[layer : layer + 1, :, :size]
            parts.append((h, c0[layer : layer + 1, :, :size]) if self.paired else h)
        return tuple(parts)

    def join(self, state, c0):
        if not self.stack:
            if self.paired:
                return state[0], state[1]
            return state, c0 + 0  # unused: passed through (as a new tensor, for ONNX)
        pad = [(0, self.width - size) for size in self.sizes]
        if not self.paired:
            return torch.cat([F.pad(h, p) for h, p in zip(state, pad)]), c0 + 0
        h = torch.cat([F.pad(s[0], p) for s, p in zip(state, pad)])
        return h, torch.cat([F.pad(s[1], p) for s, p in zip(state, pad)])


@contextmanager
def traceable(net):
    """The network with its loops over the tokens as TorchScript (``cells._Layers.loop``)."""
    loops = [m for m in net.modules() if hasattr(m, "scripted")]
    for m in loops:
        m.scripted = True
    try:
        yield net
    finally:
        for m in loops:
            m.scripted = False


class WithState(nn.Module):
    """(x, h0, c0) -> (log_softmax after the last token, next_h0, next_c0)."""

    def __init__(self, net, to_lm: torch.Tensor):
        super().__init__()
        self.net, self.states = net, States(net)
        self.register_buffer("to_lm", to_lm)  # the input's ids and the output's columns

    def forward(self, x, h0, c0):
        hidden, state = self.net.features(self.to_lm[x], self.states.split(h0, c0))
        lp = self.net.log_probs(hidden[:, -1], torch.float32)[:, self.to_lm]
        return (lp, *self.states.join(state, c0))


class NoState(nn.Module):
    """(x without SOS/EOS, x_lens) -> nll of each sentence, ``</s>`` included."""

    def __init__(self, net, to_lm: torch.Tensor, eos: int):
        super().__init__()
        self.net, self.eos = net, eos
        self.register_buffer("to_lm", to_lm)

    def forward(self, x, x_lens):
        x = self.to_lm[x]
        n, length = x.shape
        sos = torch.full((n, 1), self.eos, dtype=x.dtype)
        hidden, _ = self.net.features(torch.cat([sos, x], 1), None)  # (N, L+1, H)
        at = torch.arange(length + 1)[None, :]
        target = torch.cat([x, sos], 1)
        target = torch.where(at == x_lens[:, None], torch.full_like(target, self.eos), target)
        # (N (L+1), V): a 2-D product, which the exporter writes as a Gemm on the decoder's
        # own matrix (a 3-D one gets a transposed copy of it, which a tied model's embedding
        # cannot share: the file held the matrix twice)
        lp = self.net.log_probs(hidden.reshape(-1, hidden.shape[-1]), torch.float32)
        picked = lp.gather(1, target.reshape(-1, 1)).reshape(target.shape)
        return -(picked * (at <= x_lens[:, None]).to(picked.dtype)).sum(1)


def read_tokens(path: Path) -> dict[int, str]:
    """sherpa-onnx's tokens.txt: ``symbol id`` per line (the symbol may hold no space)."""
    if not path.is_file():
        raise SeqlmError(f"tokens={path}: no such file")
    table: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise SeqlmError(f"tokens={path}:{number}: expected 'symbol id', got {line!r}")
        table[int(parts[1])] = parts[0]
    if not table:
        raise SeqlmError(f"tokens={path}: no tokens")
    return table


def token_maps(vocab: Vocab, tokens: dict[int, str] | None):
    """(to_lm, sos id, facts): each recogniser id's LM id, used for the input's ids and the
    output's columns alike; without a table, the LM's own ids."""
    if tokens is None:
        return torch.arange(len(vocab)), Vocab.eos_id, {"tokens": "the LM's own vocabulary"}
    size = max(tokens) + 1
    to_lm = np.full(size, Vocab.unk_id, dtype=np.int64)
    unknown = []
    sos = None
    for rid, symbol in tokens.items():
        if symbol in BOUNDARY:
            to_lm[rid] = Vocab.eos_id
            sos = rid if sos is None else sos
        elif symbol in vocab.stoi:
            to_lm[rid] = vocab.stoi[symbol]
        elif symbol != UNK:
            unknown.append(symbol)
    if sos is None:  # the recogniser has no sentence mark: one more id, read as <eos>
        sos, to_lm = size, np.append(to_lm, Vocab.eos_id)
    facts = {
        "tokens": len(tokens),
        "tokens_unknown": len(unknown),
        "tokens_unknown_examples": unknown[:20],
    }
    return torch.from_numpy(to_lm), sos, facts


def metadata(net, states: States, sos: int, vocab_size: int, extra: dict) -> dict[str, str]:
    out = {
        "model_type": "rnnlm",
        "version": "1",
        "model_author": "seqlm",
        "comment": f"seqlm {net.cell} language model",
        "sos_id": str(sos),
        "eos_id": str(sos),
        "vocab_size": str(vocab_size),
        "num_layers": str(len(states.sizes)),
        "hidden_size": str(states.width),
        "embedding_dim": str(net.embedding.embedding_dim),
        "seqlm_cell": net.cell,
        "c0": "state" if states.paired else "unused: passed through unchanged",
    }
    if len(set(states.sizes)) > 1:
        out["seqlm_hidden_sizes"] = ",".join(map(str, states.sizes))
        out["state"] = "layer l in the first seqlm_hidden_sizes[l] units of row l, zeros after"
    out.update({k: str(v) for k, v in extra.items()})
    return out


def export_onnx(scorer, out: Path, tokens: Path | None = None, quantize: str | None = None):
    """Write with-state.onnx and no-state.onnx (and their ``.int8.onnx`` with ``quantize``)
    and tokens.txt into ``out``; returns the facts (written beside as export.json)."""
    try:
        import onnx
    except ImportError:
        raise SeqlmError("export needs onnx: pip install 'seqlm[export]'") from None
    net = scorer.net.float().cpu().eval()
    exportable(net)
    table = read_tokens(tokens) if tokens is not None else None
    to_lm, sos, facts = token_maps(scorer.vocab, table)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = len(to_lm)
    states = States(net)
    meta = metadata(net, states, sos, vocab_size, {"lm_vocab_size": len(scorer.vocab)})
    x = torch.full((1, 2), sos, dtype=torch.long)
    h = torch.zeros(len(states.sizes), 1, states.width)
    files = {"with-state": out / "with-state.onnx", "no-state": out / "no-state.onnx"}
    with torch.no_grad(), traceable(net):
        _export(
            WithState(net, to_lm).eval(),
            (x, h, h.clone()),
            files["with-state"],
            ["x", "h0", "c0"],
            ["log_softmax", "next_h0", "next_c0"],
            {
                "x": {0: "N", 1: "L"},
                "h0": {1: "N"},
                "c0": {1: "N"},
                "log_softmax": {0: "N"},
                "next_h0": {1: "N"},
                "next_c0": {1: "N"},
            },
        )
        _export(
            NoState(net, to_lm, Vocab.eos_id).eval(),
            (x, torch.tensor([2])),
            files["no-state"],
            ["x", "x_lens"],
            ["nll"],
            {"x": {0: "N", 1: "L"}, "x_lens": {0: "N"}, "nll": {0: "N"}},
        )
    for kind, path in files.items():
        model = onnx.load(str(path))
        for key, value in {**meta, "comment": f"{meta['comment']}, {kind}"}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(path))
    if table is None:
        lines = [f"{w} {i}" for i, w in enumerate(scorer.vocab.itos)]
        (out / "tokens.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if quantize is not None:
        files.update(_quantized(files))
    facts.update(
        {
            "config": scorer.config,  # the run's: its data and tokenizer, for seqlm.load
            "files": {k: str(p) for k, p in files.items()},
            "bytes": {k: p.stat().st_size for k, p in files.items()},
            "metadata": meta,
        }
    )
    return facts


def _export(module, args, path, inputs, outputs, axes) -> None:
    """``module`` (in evaluation mode: the exporter puts a module back in the mode it found
    it in, the network inside included) traced to ``path``."""
    import warnings

    with warnings.catch_warnings():  # the TorchScript exporter's notices about LSTM batches
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantized(files: dict[str, Path]) -> dict[str, Path]:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise SeqlmError("quantize=int8 needs onnxruntime: pip install 'seqlm[export]'") from None
    import logging

    out = {}
    logging.disable(logging.WARNING)  # its advice to pre-process, printed for every file
    try:
        for kind, path in files.items():
            target = path.with_suffix(".int8.onnx")
            quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
            out[f"{kind}.int8"] = target
    finally:
        logging.disable(logging.NOTSET)
    return out


def session(path: Path):
    """An onnxruntime session of an exported file, one thread (as a decoder runs it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def sentence_nll(no_state, lines: list[list[int]], batch: int = 64) -> float:
    """The summed nll of ``lines`` (ids without SOS/EOS) by a no-state file, as
    sherpa-onnx's offline LM scores them: inputs by position, padded batches."""
    total = 0.0
    first, second = (i.name for i in no_state.get_inputs())
    for a in range(0, len(lines), batch):
        part = lines[a : a + batch]
        width = max(1, max(len(ln) for ln in part))
        x = np.zeros((len(part), width), dtype=np.int64)
        for i, ln in enumerate(part):
            x[i, : len(ln)] = ln
        lens = np.array([len(ln) for ln in part], dtype=np.int64)
        total += float(no_state.run(None, {first: x, second: lens})[0].sum())
    return total


def perplexities(files: dict[str, Path], lines: list[list[int]]) -> dict[str, float]:
    """Test perplexity of each no-state file over ``lines`` (``</s>`` counted, as seqlm)."""
    tokens = sum(len(ln) + 1 for ln in lines)
    return {
        kind: math.exp(sentence_nll(session(path), lines) / tokens)
        for kind, path in files.items()
        if kind.startswith("no-state")
    }


def write_facts(out: Path, facts: dict) -> None:
    (out / "export.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
