"""``aeframe validate``: contract checks on techniques, datasets and metrics, each one a PASS, FAIL or
SKIP line saying what it verified and, on failure, why.

It builds, trains briefly and evaluates, so it may import ``aeframe.training`` and below.
"""
