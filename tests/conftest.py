"""Root fixtures. Plain helpers live in ``tests/helpers.py`` (``tests/`` is on ``sys.path`` via setup.cfg)."""
