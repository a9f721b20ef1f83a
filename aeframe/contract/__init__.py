"""What a plugin implements and is handed: the hooks, the technique, dataset, metric and executor
contracts, typed parameters, schedules, model outputs, image resampling and the study's protocol as
reusable pieces.

``aeframe`` exports these to plugins (plugins import from ``aeframe`` itself, never from here). May
import ``aeframe.cells`` (an executor is handed cell specs and returns records) and the base modules
``aeframe.errors`` and ``aeframe.console``; nothing that finds plugins, plans or runs.
"""
