"""The driver of ``aeframe bench``: plan, load each dataset once and key its cells, take stock of the
store, hand what is left to an executor, save each record as it comes; training cell specs in this
process or in a worker elsewhere; progress lines; the device and versions of a run.

May import ``aeframe.training``, ``aeframe.store`` and below; never the report or validate.
"""
