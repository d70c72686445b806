"""A TCP forwarder that stands between the registry and the real MLflow server, so a test can make MLflow
unreachable (connections refused) or hung (connections accepted, nothing answered) and bring it back,
without stopping the session's MLflow server."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.helpers import free_port


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "forward"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._track(client)
            if self.mode == "forward":
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    self._close(client)
                    continue
                self._track(upstream)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            # hang: keep the connection open and never answer

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.mode != "forward":
                    break
                sink.sendall(data)
        except OSError:
            pass
        if self.mode == "forward":  # a hang keeps the half-dead connection open
            self._close(source)
            self._close(sink)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def refuse(self) -> None:
        """MLflow is down: the port is closed and open connections are cut."""
        self.mode = "refuse"
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._drop_all()

    def hang(self) -> None:
        """MLflow hangs: connections are accepted and requests never answered."""
        if self._listener is None:
            self._listen()
        self._drop_all()
        self.mode = "hang"

    def forward(self) -> None:
        """MLflow is back."""
        self._drop_all()
        self.mode = "forward"
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.refuse()
