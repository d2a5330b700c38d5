"""The floor: the thinnest raw redis-py code doing the same work."""

from benchmarks.floor.redis_floor import FloorTarget

__all__ = ['FloorTarget']
