"""The SQLite results store: every attempt of every cell, the writer's lock, rows to records and back,
the schema and its migration from older stores, and merging stores made apart. No torch.

May import ``aeframe.cells`` and the base modules only: the store knows records, not how they were made.
"""
