"""Per-item backbone states computed once into the item store (data/store.py): what goes into it (layers.py)."""
