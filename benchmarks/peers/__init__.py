"""The systems ./scripts/bench measures Mailhub against in the same run, each a small Django
project of its own (installed with the ``bench`` extra, never with Mailhub)."""
