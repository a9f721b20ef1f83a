"""Getting datasets into memory and onto the training device: the data and cache directories,
loading each dataset once per run, downloading where allowed (and saying what to put where where
not), and the device splits with their resized views.

May import ``aeframe.planning`` (a dataset is named by its ``-d`` text) and below.
"""
