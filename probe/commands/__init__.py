"""One module per ``python -m probe`` command; each exposes ``register(subparsers)``."""
