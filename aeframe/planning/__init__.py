"""From what the user typed to cells, without torch: parsing ``-t``/``-d`` texts, composing techniques
by the one rule, planning (combination x dataset x seed) cell specs, pairs and offline stand-ins,
and rebuilding a spec's live parts from a registry (the same way in this process and on a worker).

May import ``aeframe.registry`` and below.
"""
