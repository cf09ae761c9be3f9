"""Redis pub/sub as the push channel (``LOGOUT_REDIS_URL``).

For deployments where PostgreSQL ``LISTEN``/``NOTIFY`` cannot be used (a
pooler in transaction mode, a managed proxy, a MariaDB or SQLite store) or
where Redis is there anyway. The store stays the truth: a writer commits the
revocation first, then publishes the number of the log entry it wrote (never
a token, a key or a subject) on ``LOGOUT_PUSH_CHANNEL``. A subscriber that
has not read that entry yet wakes its replica's sync, which reads the store.

Every wait is bounded by ``LOGOUT_STORE_TIMEOUT`` (connect and socket
timeouts, no retries inside redis-py). A publish that fails is logged and
counted (:class:`~flask_logout.replica.ReplicaStatus` ``publish_failures``),
never raised: the revocation is stored, and polling carries it. After a
failure, publishing pauses for ``PAUSE_AFTER_FAILURE`` seconds so that a
black-holed Redis does not add a timeout to every sign-out.

The subscriber is supervised like the ``LISTEN`` connection (see
:mod:`flask_logout.replica`): it publishes to a channel of its own every
``LOGOUT_PUSH_HEARTBEAT`` seconds and expects the message back within the
store timeout; otherwise the subscription is dropped and made again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import suppress
from typing import Any

logger = logging.getLogger("flask_logout")

#: After a failed publish, how long sign-outs skip publishing (polling carries them).
PAUSE_AFTER_FAILURE = 5.0


class NoEcho(Exception):
    """A heartbeat was published but never came back on the subscription."""


def redis_client(url: str, timeout: float, heartbeat: float) -> Any:
    """A redis-py client whose every wait is bounded by ``timeout`` and that never retries on its own."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=max(1, int(heartbeat)),
        retry=Retry(NoBackoff(), 0),
    )


class RedisChannel:
    """Publishes log numbers after commit, and opens supervised subscriptions."""

    def __init__(self, url: str, channel: str, *, timeout: float, heartbeat: float) -> None:
        self.url = url
        self.channel = channel
        self.timeout = timeout
        self.heartbeat = heartbeat
        self._client: Any = None
        self._lock = threading.Lock()
        self._paused_until = 0.0
        #: Publishes that failed or were skipped (a pause after a failure).
        self.publish_failures = 0
        #: Exception class of the last failed publish, None once one succeeds again.
        self.last_publish_error: str | None = None

    @property
    def client(self) -> Any:
        # redis-py's pool is thread-safe and reopens its connections after fork().
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis_client(self.url, self.timeout, self.heartbeat)
        return self._client

    def publish(self, seq: int) -> bool:
        """Announce log entry ``seq`` (after its commit). Never raises; False if it was not published."""
        if time.monotonic() < self._paused_until:
            self.publish_failures += 1
            return False
        try:
            self.client.publish(self.channel, str(seq))
        except Exception as exc:
            self.publish_failures += 1
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
            if self.last_publish_error is None:
                logger.warning(
                    "flask_logout: Redis publish failed (%s); the revocation is stored and other processes "
                    "read it at their next poll; publishing pauses %.0f s",
                    exc.__class__.__name__,
                    PAUSE_AFTER_FAILURE,
                )
            self.last_publish_error = exc.__class__.__name__
            return False
        if self.last_publish_error is not None:
            logger.warning("flask_logout: Redis publish works again")
            self.last_publish_error = None
        return True

    def subscribe(self) -> Subscription:
        return Subscription(self)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with suppress(Exception):
                client.close()


class Subscription:
    """One subscription to the channel, plus a heartbeat channel of its own."""

    def __init__(self, channel: RedisChannel) -> None:
        self.owner = channel
        self.own = f"{channel.channel}:hb:{secrets.token_hex(6)}"
        self.pubsub = channel.client.pubsub()
        try:
            self.pubsub.subscribe(channel.channel, self.own)
            confirmed: set[str] = set()
            until = time.monotonic() + channel.timeout
            while len(confirmed) < 2 and (remaining := until - time.monotonic()) > 0:
                message = self.pubsub.get_message(timeout=remaining)
                if message is not None and message["type"] == "subscribe":
                    confirmed.add(_text(message["channel"]))
            if len(confirmed) < 2:
                raise TimeoutError("subscription not confirmed within the store timeout")
        except BaseException:
            self.close()
            raise

    def drain(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` for announcements; the log numbers announced."""
        announced: list[int] = []
        message = self.pubsub.get_message(timeout=timeout)
        while message is not None:
            if message["type"] == "message" and _text(message["channel"]) == self.owner.channel:
                with suppress(ValueError):
                    announced.append(int(message["data"]))
            message = self.pubsub.get_message(timeout=0.0)
        return announced

    def beat(self) -> list[int]:
        """Publish to our own channel; it must come back within the store timeout.

        Returns what was announced meanwhile; raises :class:`NoEcho` if the
        heartbeat did not come back (or nobody received it).
        """
        receivers = self.owner.client.publish(self.own, "hb")
        announced: list[int] = []
        until = time.monotonic() + self.owner.timeout
        while receivers and (remaining := until - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=remaining)
            if message is None or message["type"] != "message":
                continue
            channel = _text(message["channel"])
            if channel == self.own:
                return announced
            if channel == self.owner.channel:
                with suppress(ValueError):
                    announced.append(int(message["data"]))
        raise NoEcho()

    def close(self) -> None:
        with suppress(Exception):
            self.pubsub.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
