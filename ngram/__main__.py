"""``python -m ngram``: the ``ngram`` command (``ngram.cli``)."""

from ngram.cli import main

if __name__ == "__main__":
    main()
