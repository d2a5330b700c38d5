"""A loopback listener that accepts TCP connections and never answers."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Self


class BlackHole:
    """Listens on ``127.0.0.1:port``; the kernel accepts, nobody ever replies.

    Connections complete their TCP handshake (they wait in the listen
    backlog), so a client sees a connected socket whose reads never return:
    the case of a firewall or a hung server, unlike a refused connection.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._socket: socket.socket | None = None

    def __enter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(('127.0.0.1', self.port))
        listener.listen(128)
        self._socket = listener
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
