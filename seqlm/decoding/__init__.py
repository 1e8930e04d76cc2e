"""A trained model inside a recogniser: the step API a decoder drives (``step``; the
decoders' own interfaces are ``seqlm.adapters``) and n-best rescoring with WER (``rescoring``)."""
