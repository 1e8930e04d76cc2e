"""Help pages that import neither torch nor Lightning (``python -m seqlm --help``,
``python -m seqlm COMMAND --help``): a command's purpose (its module's docstring, read from the
source), its keys with their comments (its config file), the groups it composes and an example.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from seqlm.commands import COMMANDS
from seqlm.conf import CONF_DIR, choices, is_group

COMMANDS_DIR = Path(__file__).parents[1] / "commands"
PURPOSE = {
    "train": "fit a network or an n-gram model, test it, write its run directory",
    "eval": "score a run, checkpoint or ARPA file on its data (cache, dynamic evaluation)",
    "generate": "sample text from a left-to-right model",
    "score": "rank sentences by their log-probability under a model",
    "rescore": "rescore a recogniser's n-best lists: tuned weights, word error rates",
    "decode": "decode a CTC recogniser's posteriors, fused with a language model: CER, WER",
    "fill": "the most likely words for a ___ blank in a sentence",
    "compare": "runs side by side: a table and plots, from their local files",
    "gradients": "gradients through time, g_k = ||dl_t/ds_{t-k}||, of runs or fresh networks",
    "mix": "interpolate runs, the weights found by EM on validation",
    "export": "a network as ONNX files that sherpa-onnx loads (icefall's rnn_lm contract)",
}
EXAMPLES = {
    "train": [
        "python -m seqlm train model=lstm",
        "python -m seqlm train model=kn5 data=ptb data.root=../shared/data/ptb",
        "python -m seqlm train -m model=rnn,gru,lstm trainer.max_epochs=3",
    ],
    "eval": [
        "python -m seqlm eval ckpt=RUN_DIR",
        "python -m seqlm eval ckpt=lm.arpa.gz data=ptb arpa_unk='<ptb-unk>'",
    ],
    "generate": ['python -m seqlm generate ckpt=RUN_DIR prompt="the company said" top_k=40'],
    "score": ["python -m seqlm score ckpt=RUN_DIR input=sentences.txt"],
    "rescore": ["python -m seqlm rescore ckpt=RUN_DIR nbest=nbest.tsv refs=refs.tsv dev=0.5"],
    "decode": [
        "python -m seqlm decode ckpt=RUN_DIR posteriors=post/ tokens=tokens.txt refs=refs.tsv"
    ],
    "fill": ['python -m seqlm fill ckpt=RUN_DIR text="i plan to ___ a new phone"'],
    "compare": ["python -m seqlm compare RUN_DIR RUN_DIR out=cmp"],
    "gradients": ["python -m seqlm gradients RUN_DIR RUN_DIR lags=60"],
    "mix": ["python -m seqlm mix RUN_A RUN_B data=ptb"],
    "export": ["python -m seqlm export ckpt=RUN_DIR format=onnx out=onnx/ quantize=int8"],
}


def _docstring(command: str) -> str:
    source = (COMMANDS_DIR / f"{command}.py").read_text(encoding="utf-8")
    text = ast.get_docstring(ast.parse(source)) or ""
    return text.replace("``", "`")


def overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m seqlm COMMAND [key=value ...] [-m]",
        "       python -m seqlm {compare,gradients,mix} RUN_DIR... [key=value ...]",
        "",
        "commands:",
        *(f"  {c:<{width}}  {PURPOSE[c]}" for c in COMMANDS),
        "",
        "python -m seqlm COMMAND --help: that command's keys and examples.",
    ]
    return "\n".join(lines)


def page(command: str) -> str:
    """One command's help: what it does, its groups and keys, examples."""
    conf = (CONF_DIR / f"{command}.yaml").read_text(encoding="utf-8")
    keys, groups = [], []
    in_hydra = in_defaults = False
    for line in conf.splitlines():
        if line.startswith("hydra:"):
            in_hydra = True
        elif line.startswith("defaults:"):
            in_defaults = True
        elif line and not line[0].isspace() and not line.startswith("#"):
            in_hydra = in_defaults = False
        if in_defaults:
            m = re.match(r"\s*-\s*(?:optional\s+)?(\w+)\s*:", line)
            if m and is_group(m.group(1)):
                groups.append(f"  {m.group(1)}: {', '.join(choices(m.group(1)))}")
        elif not in_hydra and line.strip() and not line.startswith("#"):
            keys.append(f"  {line}")
    out = [_docstring(command), ""]
    if groups:
        out += ["groups (group=choice; then group.key=value for its keys):", *groups, ""]
    if keys:
        out += [f"keys (key=value; the defaults of conf/{command}.yaml):", *keys, ""]
    out += ["examples:", *(f"  {e}" for e in EXAMPLES.get(command, []))]
    out += [
        "",
        f"Every key of a composition, groups included: python -m seqlm {command} ... --cfg job",
    ]
    return "\n".join(out)
