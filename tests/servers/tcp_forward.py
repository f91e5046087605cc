"""A TCP port that forwards every connection to a unix socket: the local Docker
engine seen as a "remote" one (tcp://ADDRESS:PORT) by code that must treat it as
another machine's. Bytes are copied both ways untouched, so streamed answers
(events, logs, pulls) work as they do on the socket itself.

    with UnixForward("/var/run/docker.sock", host="192.0.2.2") as fwd:
        DockerSession(..., docker_host=fwd.url)
"""
from __future__ import annotations

import socket
import threading


class UnixForward:
    def __init__(self, target: str, host: str = "127.0.0.1"):
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self.url = f"tcp://{host}:{self.port}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, name=f"forward-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: stop()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                conn.close()
                upstream.close()
                continue
            with self._lock:
                self._open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)  # pass the end of one direction on
        except OSError:
            pass

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            for s in self._open:
                try:
                    s.close()
                except OSError:
                    pass
            self._open.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
