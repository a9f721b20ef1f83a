"""Records into tables and pages: grouping cells by the condition they were measured under,
statistics across seeds, the markdown, JSON and CSV renderers, pictures, and the leaderboard page.

May import ``aeframe.cells``, ``aeframe.contract`` (metric titles) and the base modules; it never
trains and never opens the store (the CLI hands it records).
"""
