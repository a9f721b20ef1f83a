"""Facts that a built-in dataset's registration and its reader or generator share, without torch:
the registration needs them before anything is loaded, the reader or generator when it is."""
from __future__ import annotations

# CIFAR-10's python archive and its home page, named in every message that says how to get it.
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"

# The side of every Shapes image.
SHAPES_SIZE = 32
