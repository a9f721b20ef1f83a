"""One cell, from its spec to its record: build its parts, prepare them off the clock, train under
the budget, evaluate on the test split, and make the record.

May import ``aeframe.speed`` and below.
"""
