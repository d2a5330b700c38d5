"""Errors of the Redis backend."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import NoReturn

from redis.exceptions import ResponseError

from a2a_scale import A2AScaleError

_KEY_IN_MESSAGE = re.compile(r'WRONGTYPE (\S+) holds')


class RedisWrongTypeError(A2AScaleError, TypeError):
    """A key holds a value of another type than the backend expects."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(
            f'Redis key {key!r} holds the wrong kind of value ({detail}); '
            'another application may be using the same namespace'
        )
        self.key = key


@contextlib.contextmanager
def wrong_type_as_error(key: str) -> Iterator[None]:
    """Turns a ``WRONGTYPE`` reply into a `RedisWrongTypeError` naming a key.

    Args:
        key: The key to name when the reply does not name one itself.
    """
    try:
        yield
    except ResponseError as e:
        raise_as_wrong_type(e, key)


def raise_as_wrong_type(error: ResponseError, key: str) -> NoReturn:
    """Raises `error`, or, for a ``WRONGTYPE`` reply, a `RedisWrongTypeError`.

    Args:
        error: The error reply.
        key: The key to name when the reply does not name one itself.
    """
    message = str(error)
    if 'WRONGTYPE' not in message:
        raise error
    match = _KEY_IN_MESSAGE.search(message)
    raise RedisWrongTypeError(match.group(1) if match else key, message) from None
