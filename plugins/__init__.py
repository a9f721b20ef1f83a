"""aeframe's built-in plugins, installed as the package ``aeframe_builtins``.

Each module is registered through the ``aeframe`` entry-point group, exactly as a third-party plugin
would be; the core never imports them.
"""
