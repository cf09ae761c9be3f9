"""A TCP proxy in front of PostgreSQL that a test can cut: the store 'goes down' for one app only.

Three kinds of fault, each for this proxy's clients only (other tests, and
the PostgreSQL server itself, are untouched):

* ``down()`` closes every open connection and refuses new ones, as a stopped
  server does: the client sees the failure at once.
* ``blackhole()`` keeps every socket open and forwards nothing, in either
  direction, on open and on new connections: what dropped packets look like
  to the client (a firewall, a partition). Nothing errors; every wait hangs
  unless the client bounds it.
* ``blackhole_existing()`` silences only the connections open now and lets
  new ones through: a half-open connection after a partition or a database
  restart, while the network itself works again.

``up()`` lets new connections through again. A connection that went silent
stays silent (its bytes were lost, as after a NAT or server restart): the
client must notice and reconnect. With ``drop_notifications=True`` the proxy
also removes every ``NotificationResponse`` from the server's stream, as a
pooler in transaction mode does (``LISTEN`` goes through, notifications never
come back); that needs ``sslmode=disable`` so that the stream can be parsed.
"""

from __future__ import annotations

import socket
import threading


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket | None, silent: bool) -> None:
        self.client = client
        self.server = server
        self.silent = silent

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.server) if s is not None]


class FaultProxy:
    def __init__(
        self, target_host: str = "127.0.0.1", target_port: int = 5432, *, drop_notifications: bool = False
    ) -> None:
        self.target = (target_host, target_port)
        self.drop_notifications = drop_notifications
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._mode = "up"  # up, down or blackhole
        self._closed = False
        #: Connections accepted so far (a reconnect shows up here).
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._mode == "down":
                client.close()
                continue
            if self._mode == "blackhole":
                link = _Link(client, None, silent=True)
                with self._lock:
                    self._links.add(link)
                threading.Thread(target=self._pipe, args=(link, client, None, False), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, server, silent=False)
            with self._lock:
                self._links.add(link)
            threading.Thread(target=self._pipe, args=(link, client, server, False), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(link, server, client, self.drop_notifications), daemon=True
            ).start()

    def _pipe(self, link: _Link, source: socket.socket, sink: socket.socket | None, filtered: bool) -> None:
        pending = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if link.silent or sink is None:
                    continue  # dropped on the floor: the sender hears nothing back
                if filtered:
                    pending += data
                    data, pending = _without_notifications(pending)
                if data:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._links.discard(link)
            for sock in link.sockets():
                try:
                    sock.close()
                except OSError:
                    pass

    def down(self) -> None:
        self._mode = "down"
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            for sock in link.sockets():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def blackhole(self) -> None:
        self._mode = "blackhole"
        self.blackhole_existing()

    def blackhole_existing(self) -> None:
        with self._lock:
            for link in self._links:
                link.silent = True

    def up(self) -> None:
        self._mode = "up"

    def close(self) -> None:
        self._closed = True
        self.down()
        self.listener.close()


def _without_notifications(buffer: bytes) -> tuple[bytes, bytes]:
    """Split the server's stream into whole messages minus ``NotificationResponse`` ('A'), and the rest."""
    kept = bytearray()
    at = 0
    while len(buffer) - at >= 5:
        length = int.from_bytes(buffer[at + 1 : at + 5], "big")
        end = at + 1 + length
        if end > len(buffer):
            break
        if buffer[at : at + 1] != b"A":
            kept += buffer[at:end]
        at = end
    return bytes(kept), buffer[at:]
