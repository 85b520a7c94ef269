"""Per-item backbone states computed once: the keyed store (store.py) and what goes into it (layers.py)."""
