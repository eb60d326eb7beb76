"""Tests of pydbal's public Python API (``pydbal.connect``, tenant scopes, ``workflows``)."""
