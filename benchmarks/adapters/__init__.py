"""Adapters: every system under test behind one small `Target` interface."""

from benchmarks.adapters.base import Target, TargetSpec
from benchmarks.adapters.registry import (
    ALL_TARGETS,
    build_target,
    cleanup,
    provision,
)

__all__ = [
    'ALL_TARGETS',
    'Target',
    'TargetSpec',
    'build_target',
    'cleanup',
    'provision',
]
