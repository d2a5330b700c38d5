"""Registers the ``redis`` backend without importing the redis driver."""

from collections.abc import Callable

from a2a_scale import BackendSpec, hookimpl
from a2a_scale_redis.settings import RedisSettings


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Registers the Redis backend."""
    register(
        BackendSpec(
            name='redis',
            factory='a2a_scale_redis.backend:create_backend',
            settings_model=RedisSettings,
            description='Redis or Redis Cluster: Streams or Pub/Sub.',
            requires=('redis',),
            extra='redis',
        )
    )
