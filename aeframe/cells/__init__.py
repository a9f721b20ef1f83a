"""The identity of a cell, without torch: its budget, its speed settings, its spec (what planning
hands to an executor) and key, and the record it leaves behind.

Everything above reads and writes cells through these types, so that a cell planned on one machine
is trained on another and read back by the report unchanged. May import ``aeframe.errors`` only.
"""
