"""aeframe's fixtures (aeframe_registry, tiny_shapes, quick_budget) for this plugin's tests."""
pytest_plugins = ["aeframe.testing"]
