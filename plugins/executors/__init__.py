"""The built-in executors: ``local`` (this process) and ``ray`` (a Ray cluster), driver and worker sides.
"""
