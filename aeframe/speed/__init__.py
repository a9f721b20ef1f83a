"""How fast a cell computes, measured rather than assumed: the one training step under a precision
and the device synchronisation every clock uses, the ``--precision auto`` probe, the memory layout,
rehearsals and the one-time preparation before a cell's clock starts, contention, and the cache of
measured choices.

May import ``aeframe.data`` and below.
"""
