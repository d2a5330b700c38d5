"""The ``a2a-scale`` command line: ``demo``, ``backends`` and ``check``."""

from a2a_scale.cli.app import app, build_app, main

__all__ = ['app', 'build_app', 'main']
