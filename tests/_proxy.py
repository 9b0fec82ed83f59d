"""A loopback TCP proxy that the fault tests control: it forwards 127.0.0.1:<port> to a server and
can cut every connection, stall, or drop the reply to a chosen command.

One thread does all the socket work (a selector over non-blocking sockets, with per-direction
buffers, so neither side can block the other); the control methods hand it a request and wait
until it is done, so when ``cut()`` returns, every connection open at that moment is gone.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable

#: How long a control method waits for the proxy thread before calling the proxy broken.
CONTROL_TIMEOUT = 5.0
_RECV = 256 * 1024


def _reset(sock: socket.socket) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send a RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Pair:
    """One proxied connection: the client's socket, the server's, and what each side still owes."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.to_client = bytearray()
        self.to_upstream = bytearray()
        #: a request was forwarded and no reply byte has come back yet
        self.in_flight = False
        #: drop the next reply (and reset the connection): set by ``lose_replies``
        self.lose_next_reply = False
        self.closed = False

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client


class Proxy:
    """Forward ``127.0.0.1:self.port`` to ``host:port``. Use as a context manager, or call ``close()``.

    Counters (read them from the test thread; they only grow): ``accepted`` connections,
    ``cut_connections`` closed by ``cut()``, ``cut_in_flight`` of those with a request unanswered,
    ``replies_lost`` by ``lose_replies``.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._pairs: list[_Pair] = []
        self._requests: queue.Queue[tuple[Callable[[], None], threading.Event]] = queue.Queue()
        self._paused = False
        self._stopping = False
        self._lose_match = b""
        self._lose_left = 0
        self.accepted = 0
        self.cut_connections = 0
        self.cut_in_flight = 0
        self.replies_lost = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    # -- control (any thread) --------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection, both sides, mid-command or not; return how many there were.
        Bytes not yet forwarded are dropped. New connections are accepted as before."""
        done: list[int] = []
        self._call(lambda: done.append(self._cut_all()))
        return done[0]

    def pause(self) -> None:
        """Stop moving bytes and accepting connections (a stalled network); ``resume()`` goes on."""
        self._call(lambda: setattr(self, "_paused", True))

    def resume(self) -> None:
        self._call(lambda: setattr(self, "_paused", False))

    def lose_replies(self, match: bytes, times: int = 1) -> None:
        """The next ``times`` requests whose bytes contain ``match`` reach the server, but their reply
        does not come back: the proxy resets that connection instead (applied, not acknowledged)."""

        def arm() -> None:
            self._lose_match, self._lose_left = match, times

        self._call(arm)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def counters(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "cut_connections": self.cut_connections,
            "cut_in_flight": self.cut_in_flight,
            "replies_lost": self.replies_lost,
        }

    @property
    def lose_pending(self) -> int:
        """Armed losses not yet triggered by a matching request."""
        return self._lose_left

    def close(self) -> None:
        """Reset every connection, stop the thread and close the listener (idempotent)."""
        if self._thread.is_alive():
            self._stopping = True
            self._wake()
            self._thread.join(timeout=CONTROL_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError(f"proxy thread on port {self.port} did not stop")
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._sel.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, action: Callable[[], None]) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"proxy on port {self.port} is not running (error: {self.error!r})")
        done = threading.Event()
        self._requests.put((action, done))
        self._wake()
        if not done.wait(CONTROL_TIMEOUT):
            raise RuntimeError(f"proxy thread on port {self.port} did not answer (error: {self.error!r})")

    def _wake(self) -> None:
        # OSError: the buffer is full of wake-ups already, or the proxy is closed.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- the proxy thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._sel.select(timeout=0.1):
                    if key.data == "wake":
                        self._drain_wake()
                    elif key.data == "accept":
                        self._accept()
                    else:
                        self._service(key.data, key.fileobj, mask)  # type: ignore[arg-type]
                self._serve_requests()
        except BaseException as e:  # kept for the test to see; the connections go down with us
            self.error = e
        finally:
            self._cut_all(count=False)
            self._serve_requests()  # nobody waits in vain

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _serve_requests(self) -> None:
        while True:
            try:
                action, done = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                action()
                self._update_interest()
            finally:
                done.set()

    def _accept(self) -> None:
        while not self._paused:
            try:
                client, _addr = self._listener.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                upstream.settimeout(2.0)
                upstream.connect(self.target)  # loopback: immediate, or refused at once
            except OSError:
                upstream.close()
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream)
            self._pairs.append(pair)
            self._sel.register(client, selectors.EVENT_READ, pair)
            self._sel.register(upstream, selectors.EVENT_READ, pair)

    def _service(self, pair: _Pair, sock: socket.socket, mask: int) -> None:
        if pair.closed:
            return
        if mask & selectors.EVENT_READ:
            try:
                data = sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":  # the peer closed: pass on what it was owed, then close both
                self._flush(pair)
                self._drop(pair)
                return
            if data:
                if sock is pair.client:
                    if self._lose_left and self._lose_match in data:
                        self._lose_left -= 1
                        pair.lose_next_reply = True
                    pair.to_upstream += data
                    pair.in_flight = True
                else:
                    if pair.lose_next_reply:
                        self.replies_lost += 1
                        self._drop(pair)
                        return
                    pair.to_client += data
                    pair.in_flight = False
        self._flush(pair)
        if not pair.closed:
            self._interest(pair)

    def _flush(self, pair: _Pair) -> None:
        for sock, buf in ((pair.upstream, pair.to_upstream), (pair.client, pair.to_client)):
            if not buf:
                continue
            try:
                sent = sock.send(buf)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._drop(pair)
                return
            del buf[:sent]

    def _interest(self, pair: _Pair) -> None:
        for sock, out in ((pair.client, pair.to_client), (pair.upstream, pair.to_upstream)):
            # While paused nothing is read or written: unwatched, so the loop does not spin.
            events = 0 if self._paused else selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
            self._watch(sock, events, pair)

    def _watch(self, sock: socket.socket, events: int, data: object) -> None:
        registered = sock in self._sel.get_map()
        if events and registered:
            self._sel.modify(sock, events, data)
        elif events:
            self._sel.register(sock, events, data)
        elif registered:
            self._sel.unregister(sock)

    def _update_interest(self) -> None:
        self._watch(self._listener, 0 if self._paused else selectors.EVENT_READ, "accept")
        for pair in list(self._pairs):
            if not pair.closed:
                if not self._paused:
                    self._flush(pair)
                if not pair.closed:
                    self._interest(pair)

    def _drop(self, pair: _Pair) -> None:
        if pair.closed:
            return
        pair.closed = True
        for sock in (pair.client, pair.upstream):
            with contextlib.suppress(KeyError, ValueError):  # not watched while paused
                self._sel.unregister(sock)
            _reset(sock)
        self._pairs.remove(pair)

    def _cut_all(self, count: bool = True) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            if count:
                self.cut_connections += 1
                self.cut_in_flight += pair.in_flight
            self._drop(pair)
        return len(pairs)
