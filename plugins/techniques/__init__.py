"""The built-in techniques: the study's six rows and later ones, their models, losses and weights.

Each module named by an entry point holds one technique's registration and imports no torch; the
others (models, the VGG loss, weights) are imported when a cell is built.
"""
