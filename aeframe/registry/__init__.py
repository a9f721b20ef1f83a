"""Finding plugins through their entry points, checking what they register, and the name -> object
tables of techniques, datasets, metrics and executors.

A broken plugin is recorded and skipped here, never fatal. May import ``aeframe.contract`` and below.
"""
