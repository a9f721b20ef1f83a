"""aeframe's built-in plugins, installed as the package ``aeframe_builtins``.

The modules named by the ``aeframe`` entry points (see pyproject.toml) are registered exactly as a
third-party plugin would be, and hold the registrations alone: they import no torch, so building
the registry stays fast. The other modules hold the models, losses, weights and readers those
registrations import when a cell is built or a dataset loaded. The core never imports any of them,
and they import from aeframe only what it exports.
"""
