"""The CLI's sub-commands; each is ``run(cfg)`` on a composed Hydra config."""

COMMANDS = (
    "train",
    "eval",
    "generate",
    "score",
    "rescore",
    "decode",
    "fill",
    "compare",
    "gradients",
    "mix",
    "export",
)
POSITIONAL = ("compare", "gradients", "mix")  # commands whose run directories come as arguments
