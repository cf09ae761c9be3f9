"""Each process's in-memory copy of the live revocations.

The store is the truth; this replica is what makes the per-request check a few
dictionary look-ups. It holds, for access tokens that may still be alive:

* revoked token ids (``jti``), revoked sessions (``fid``);
* per subject, the lowest generation still valid (a logout-all raised it);
* a version number bumped when an API client's record changes, so that
  cached whitelists are dropped.

It follows the store's replication log (``logout_events``) by sequence
number. A revocation made by this process is applied here as soon as it is
committed. Others arrive by polling every ``LOGOUT_SYNC_INTERVAL`` seconds
and at once by push: ``LISTEN``/``NOTIFY`` on PostgreSQL, or Redis pub/sub
on any store when ``LOGOUT_REDIS_URL`` is set (:mod:`flask_logout.push_redis`). If no sync has
succeeded for ``LOGOUT_MAX_STALENESS`` seconds, :meth:`Replica.fresh` turns
false and requests are refused (fail closed) until one does.

PostgreSQL and MariaDB/MySQL hand out sequence numbers before commit, so a later number can
become visible before an earlier one. The replica therefore re-reads from
the lowest number it may still be missing, and only gives up on a gap (a
rolled-back transaction) after ``GAP_TIMEOUT`` seconds. Applying an event
twice is harmless.

Entries leave when every access token they could end has expired: each event
carries that time, and expiry works through per-minute buckets, so cleaning
up costs time in proportion to what leaves, not to what stays.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from .store import NOTIFY_CHANNEL, Event, SQLStore, deadline

if TYPE_CHECKING:
    from .push_redis import RedisChannel

logger = logging.getLogger("flask_logout")

GAP_TIMEOUT = 30.0
CATCH_UP_WAIT = 2.0
#: After LISTEN was found not to deliver notifications, how long to wait before trying again.
PUSH_RETRY_AFTER_FAILURE = 60.0
#: Reconnecting a lost push connection: wait 1 s, then twice as long each failure, up to this.
PUSH_BACKOFF_MAX = 16.0


@dataclass(frozen=True)
class ReplicaStatus:
    """A snapshot of one process's replica, for health checks (:meth:`LogoutService.status`).

    ``age`` is the seconds since the last successful sync (None: never);
    ``fresh`` is whether that is within ``max_staleness``; ``push`` is True
    while a ``LISTEN`` connection is up and its heartbeat comes back;
    ``push_error`` says why push is off; ``push_via`` is ``"postgres"``
    (LISTEN/NOTIFY) or ``"redis"`` (pub/sub, ``LOGOUT_REDIS_URL``), None
    without push; ``publish_failures`` counts Redis publishes that failed
    or were skipped after a failure, ``last_publish_error`` is the exception
    class of the last one (None once a publish works again);
    ``last_error`` is the exception class of the last failed sync and
    ``last_error_at`` its Unix time.
    """

    fresh: bool
    age: float | None
    max_staleness: float
    sync_interval: float
    running: bool
    push_enabled: bool
    push: bool
    channel: str | None
    push_error: str | None
    push_reconnects: int
    push_via: str | None
    publish_failures: int
    last_publish_error: str | None
    last_sync_at: float | None
    last_error: str | None
    last_error_at: float | None
    store_timeout: float

    @property
    def stale(self) -> bool:
        return not self.fresh

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stale": self.stale}


class _NoEcho(Exception):
    """A heartbeat NOTIFY went through, but never came back on the LISTEN connection."""


_REPLICAS: weakref.WeakSet[Replica] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for replica in list(_REPLICAS):
        replica._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
BUCKET_SECONDS = 60


class Replica:
    """Live revocations of one store, kept in memory and kept current."""

    def __init__(
        self,
        store: SQLStore,
        *,
        sync_interval: float = 1.0,
        max_staleness: float = 10.0,
        push: bool = True,
        purge_interval: float = 3600.0,
        heartbeat: float = 5.0,
        clock: Callable[[], float] = time.time,
        redis: RedisChannel | None = None,
    ) -> None:
        self.store = store
        self.heartbeat = heartbeat
        self.sync_interval = sync_interval
        #: Monotonic time until which the replica counts as fresh
        #: (``last_ok + max_staleness``): the hot path reads one attribute.
        self.fresh_until = float("-inf")
        self._last_ok = float("-inf")
        self.max_staleness = max_staleness
        #: Incremented after every change that can refuse a token accepted
        #: before (a revocation, a client's record): a hot-path entry checked
        #: at the current epoch needs no look-up in the tables below.
        self.epoch = 0
        #: The Redis push channel, if LOGOUT_REDIS_URL is set (it replaces LISTEN/NOTIFY).
        self.redis = redis if push else None
        self.push = push and (store.is_postgres or self.redis is not None)
        if self.redis is not None:
            store.announcer = self.redis.publish  # after each commit that wrote to the log
        self.purge_interval = purge_interval
        #: False until this process's sync threads run (again after a fork).
        self.running = False
        self._clock = clock
        self.jtis: dict[str, int] = {}
        self.families: dict[str, int] = {}
        self.min_generation: dict[str, int] = {}
        self._generation_expires: dict[str, int] = {}
        self.client_versions: dict[str, int] = defaultdict(int)
        self._buckets: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self._watermark = 0
        self._seen_above: set[int] = set()
        self._gaps: dict[int, float] = {}
        self._sync_lock = threading.Lock()
        self._wake = threading.Event()
        self._threads_pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._stopped = False
        #: Called when the signing keys change (key rotation).
        self.key_listeners: list[Callable[[], None]] = []
        #: Called with ``"stale"``, ``"fresh"``, ``"push_lost"``, ``"push_restored"`` or
        #: ``"push_unavailable"`` when the replica's health changes.
        self.health_listeners: list[Callable[[str], None]] = []
        self._stop_event = threading.Event()
        self._last_ok_wall: float | None = None
        self._last_error: tuple[str, float] | None = None
        self._reported_fresh = True
        self._push_up = False
        self._push_error: str | None = None
        self._push_reconnects = 0
        self._push_was_up = False
        self._push_warned = False
        self._push_up_since_last_try = False
        _REPLICAS.add(self)

    @property
    def last_ok(self) -> float:
        """Monotonic time of the last successful sync."""
        return self._last_ok

    @last_ok.setter
    def last_ok(self, when: float) -> None:
        self._last_ok = when
        self.fresh_until = when + self._max_staleness

    @property
    def max_staleness(self) -> float:
        """Seconds after the last successful sync the replica is trusted (``LOGOUT_MAX_STALENESS``)."""
        return self._max_staleness

    @max_staleness.setter
    def max_staleness(self, seconds: float) -> None:
        self._max_staleness = seconds
        self.fresh_until = self._last_ok + seconds

    # -- the request path -------------------------------------------------

    def fresh(self) -> bool:
        """Whether the replica synced recently enough to be trusted."""
        return time.monotonic() - self.last_ok <= self.max_staleness

    def catch_up(self) -> bool:
        """Try one sync now, from the request path, when the replica is stale.

        Only one thread syncs at a time; the others wait for it (at most
        ``CATCH_UP_WAIT`` seconds, so they do not pile up on a store that
        hangs) and share its result. True if the replica is fresh afterwards.
        """
        # A sync holding the lock ends within the store timeout (its connection
        # is cut past it), so waiting longer than that only piles requests up.
        if not self._sync_lock.acquire(timeout=min(CATCH_UP_WAIT, self.store.timeout)):
            return self.fresh()
        try:
            if self.fresh():
                return True  # another thread's sync, finished while we waited
            self._sync_locked()
        except SQLAlchemyError as exc:
            self._failed(exc)
            return False
        finally:
            self._sync_lock.release()
        return True

    def revoked(self, jti: str, fid: str, principal: str, gen: int) -> bool:
        return jti in self.jtis or fid in self.families or gen < self.min_generation.get(principal, 0)

    # -- applying ---------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply one log entry (idempotent)."""
        if event.expires_at <= self._clock():
            return  # nothing it could end is alive any more
        if event.kind == "jti":
            self.jtis[event.key] = event.expires_at
        elif event.kind == "fid":
            self.families[event.key] = event.expires_at
        elif event.kind == "gen" and event.value is not None:
            if event.value > self.min_generation.get(event.key, 0):
                self.min_generation[event.key] = event.value
            if event.expires_at > self._generation_expires.get(event.key, 0):
                self._generation_expires[event.key] = event.expires_at
        elif event.kind == "client":
            self.client_versions[event.key] += 1
            self.epoch += 1
            return
        elif event.kind == "keys":
            for reload in self.key_listeners:
                reload()
            return
        else:
            return
        # After the tables: a reader that saw the old epoch checks them again.
        self.epoch += 1
        self._buckets[event.expires_at // BUCKET_SECONDS + 1].append((event.kind, event.key))

    def expire(self) -> int:
        """Drop entries whose tokens have all expired; returns how many left."""
        now_bucket = int(self._clock()) // BUCKET_SECONDS
        dropped = 0
        for bucket in [b for b in self._buckets if b <= now_bucket]:
            for kind, key in self._buckets.pop(bucket):
                # An entry re-raised by a later event carries a later expiry
                # and stays; its later bucket will see to it.
                table = {"jti": self.jtis, "fid": self.families, "gen": self._generation_expires}[kind]
                expires = table.get(key)
                if expires is not None and expires <= self._clock():
                    del table[key]
                    if kind == "gen":
                        # Every token under a lower generation has expired.
                        self.min_generation.pop(key, None)
                    dropped += 1
        return dropped

    def __len__(self) -> int:
        """Live revocations held (for memory measurements)."""
        return len(self.jtis) + len(self.families) + len(self.min_generation)

    # -- syncing ----------------------------------------------------------

    def sync(self) -> int:
        """Read and apply what the log holds beyond this replica; returns the count.

        Raises ``SQLAlchemyError`` if the store cannot be read; the replica
        then grows stale until a sync succeeds.
        """
        with self._sync_lock:
            return self._sync_locked()

    def _sync_locked(self) -> int:
        applied = 0
        while True:
            events = self.store.events_since(self._watermark, limit=5000)
            for event in events:
                if event.seq not in self._seen_above:
                    self.apply(event)
                    applied += 1
                    self._seen_above.add(event.seq)
            self._advance()
            if len(events) < 5000:
                break
        self.last_ok = time.monotonic()
        self._last_ok_wall = time.time()
        return applied

    # -- health -------------------------------------------------------------

    def status(self) -> ReplicaStatus:
        """Where this replica stands: how old, whether push works, the last error."""
        age = time.monotonic() - self.last_ok if self._last_ok_wall is not None else None
        error = self._last_error
        return ReplicaStatus(
            fresh=self.fresh(),
            age=None if age is None else round(age, 3),
            max_staleness=self.max_staleness,
            sync_interval=self.sync_interval,
            running=self.running,
            push_enabled=self.push,
            push=self._push_up,
            channel=self.channel_name() if self._push_up else None,
            push_error=None if self._push_up else self._push_error,
            push_reconnects=self._push_reconnects,
            push_via=None if not self.push else "redis" if self.redis is not None else "postgres",
            publish_failures=self.redis.publish_failures if self.redis is not None else 0,
            last_publish_error=self.redis.last_publish_error if self.redis is not None else None,
            last_sync_at=self._last_ok_wall,
            last_error=error[0] if error else None,
            last_error_at=error[1] if error else None,
            store_timeout=self.store.timeout,
        )

    def channel_name(self) -> str:
        """The push channel: the Redis channel with ``LOGOUT_REDIS_URL``, else PostgreSQL's."""
        return self.redis.channel if self.redis is not None else NOTIFY_CHANNEL

    def _push_name(self) -> str:
        return "Redis subscription" if self.redis is not None else "LISTEN connection"

    def _failed(self, exc: BaseException) -> None:
        self._last_error = (exc.__class__.__name__, time.time())

    def _tell(self, event: str) -> None:
        for listener in self.health_listeners:
            try:
                listener(event)
            except Exception as exc:  # a receiver's bug must not stop the sync
                logger.error("flask_logout: health listener failed: %s", exc.__class__.__name__)

    def check_health(self) -> None:
        """Log and announce a change between fresh and stale (called by the poll thread)."""
        fresh = self.fresh()
        if fresh == self._reported_fresh:
            return
        self._reported_fresh = fresh
        if fresh:
            logger.warning("flask_logout: revocation replica fresh again")
        else:
            last = self._last_error[0] if self._last_error else "none"
            logger.warning(
                "flask_logout: revocation replica stale: no sync for over %.1f s (last error: %s); "
                "hot-path requests answer 503 until a sync succeeds",
                self.max_staleness,
                last,
            )
        self._tell("fresh" if fresh else "stale")

    def _advance(self) -> None:
        if not self._seen_above:
            return
        now = time.monotonic()
        highest = max(self._seen_above)
        for seq in range(self._watermark + 1, highest):
            if seq not in self._seen_above:
                self._gaps.setdefault(seq, now)
        while True:
            following = self._watermark + 1
            if following in self._seen_above:
                self._seen_above.discard(following)
                self._gaps.pop(following, None)
            elif following in self._gaps and now - self._gaps[following] > GAP_TIMEOUT:
                del self._gaps[following]  # a rolled-back transaction's number: never coming
            else:
                break
            self._watermark = following

    def wake(self) -> None:
        """Sync now rather than at the next interval."""
        self._wake.set()

    def ensure_running(self) -> None:
        """Start this process's sync threads (again after a fork) and the first sync."""
        if self._threads_pid == os.getpid() or self._stopped:
            return
        with self._sync_lock:
            if self._threads_pid == os.getpid():
                return
            self._threads_pid = os.getpid()
            self.running = True
        try:
            self.sync()
        except SQLAlchemyError as exc:
            self._failed(exc)
            logger.error("flask_logout: first revocation sync failed: %s", exc.__class__.__name__)
        self._threads = [threading.Thread(target=self._poll_loop, name="flask-logout-sync", daemon=True)]
        if self.push:
            self._threads.append(threading.Thread(target=self._listen_loop, name="flask-logout-listen", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the sync threads and wait for them (a few seconds at most)."""
        self._stopped = True
        self._stop_event.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads = []
        if self.redis is not None:
            self.redis.close()

    def _after_fork(self) -> None:
        # Threads do not survive fork(); neither may pooled connections be shared.
        self._threads_pid = None
        self._threads = []
        self.running = False
        self._sync_lock = threading.Lock()
        self._push_up = False  # the parent's LISTEN connection is not ours
        self.fresh_until = float("-inf")  # the next request takes the full path, which starts the threads
        self.store.after_fork()

    def _poll_loop(self) -> None:
        pid = os.getpid()
        next_expire = 0.0
        next_purge = time.monotonic() + self.purge_interval
        wait = self.sync_interval
        while not self._stopped and self._threads_pid == pid:
            self._wake.wait(wait)
            self._wake.clear()
            if self._stopped:
                return
            try:
                self.sync()
                wait = self.sync_interval
            except Exception as exc:  # never let the poll thread die
                self._failed(exc)
                logger.warning("flask_logout: revocation sync failed: %s", exc.__class__.__name__)
                # The failed connection is gone from the pool: retry soon on a
                # fresh one, whatever the interval (push may be waiting on it).
                wait = min(self.sync_interval, 1.0)
            self.check_health()
            if time.monotonic() >= next_expire:
                self.expire()
                next_expire = time.monotonic() + BUCKET_SECONDS
            if self.purge_interval and time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self.purge_interval
                try:
                    counts = self.store.purge(int(self._clock()))
                    logger.info("flask_logout: purged %s", counts)
                except Exception as exc:
                    logger.warning("flask_logout: purge failed: %s", exc.__class__.__name__)

    def _listen_loop(self) -> None:
        """PostgreSQL LISTEN: wake the sync the moment a revocation commits anywhere.

        Supervised: every ``heartbeat`` seconds the connection sends a NOTIFY
        to a channel of its own, which must come back within the store
        timeout. A connection that errors, or whose heartbeat does not come
        back, is closed and reopened a second later. A heartbeat that went
        through but never came back on a fresh connection means notifications
        are not delivered at all (a pooler in transaction mode): that is
        logged once, and push is retried only every minute.
        """
        pid = os.getpid()
        failures = 0
        while not self._stopped and self._threads_pid == pid:
            fresh_connection_failed = False
            try:
                if self.redis is not None:
                    self._subscribe_once(pid)
                else:
                    self._listen_once(pid)
            except _NoEcho as exc:
                fresh_connection_failed = bool(exc.args and exc.args[0] == "first")
                self._push_down("heartbeat did not come back")
            except Exception as exc:
                self._push_down(exc.__class__.__name__)
            if fresh_connection_failed:
                self._push_error = "notifications do not arrive"
                if not self._push_warned:
                    self._push_warned = True
                    logger.warning(
                        "flask_logout: %s; falling back to polling every LOGOUT_SYNC_INTERVAL (%.1f s)",
                        "the Redis heartbeat does not come back"
                        if self.redis is not None
                        else "LISTEN/NOTIFY does not work on this connection (PgBouncer transaction pooling?)",
                        self.sync_interval,
                    )
                    self._tell("push_unavailable")
                self._stop_event.wait(PUSH_RETRY_AFTER_FAILURE)
            else:
                # Back off: 1 s after losing a working connection, doubling while reconnecting fails.
                failures = 0 if self._push_up_since_last_try else failures + 1
                self._push_up_since_last_try = False
                self._stop_event.wait(min(PUSH_BACKOFF_MAX, 2.0 ** max(0, failures - 1)))

    def _push_down(self, reason: str) -> None:
        self._push_error = reason
        if self._push_up:
            self._push_up = False
            logger.warning("flask_logout: %s lost (%s); reconnecting, polling meanwhile", self._push_name(), reason)
            if self.redis is None:
                # The pooled connections took the same way to the server and may be
                # as dead: drop the idle ones now rather than find out one timeout at a time.
                self.store.recycle()
            self._tell("push_lost")
        else:
            logger.debug("flask_logout: %s failed (%s)", self._push_name(), reason)

    def _listen_once(self, pid: int) -> None:
        # A connection of its own, outside the pool: it sits in LISTEN for good.
        connection: Any = self.store.connect_listener()
        own = f"{NOTIFY_CHANNEL}_hb_{secrets.token_hex(6)}"  # this connection's heartbeat channel
        try:
            with deadline(connection, self.store.timeout):
                connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                connection.execute(f"LISTEN {own}")
            try:
                self._beat(connection, own)
            except _NoEcho:
                raise _NoEcho("first") from None
            self._push_connected()
            self._sync_quietly()  # anything committed before LISTEN took hold
            next_beat = time.monotonic() + self.heartbeat
            while not self._stopped and self._threads_pid == pid:
                if self._drain(connection, own, timeout=0.2):
                    self._sync_quietly()
                if time.monotonic() >= next_beat:
                    self._beat(connection, own)
                    next_beat = time.monotonic() + self.heartbeat
        finally:
            with suppress(Exception):
                connection.close()

    def _push_connected(self) -> None:
        self._push_up = True
        self._push_up_since_last_try = True
        self._push_error = None
        self._push_warned = False
        if self._push_was_up:
            self._push_reconnects += 1
            logger.warning("flask_logout: %s reconnected (channel %s)", self._push_name(), self.channel_name())
            self._tell("push_restored")
        else:
            logger.info("flask_logout: %s established (channel %s)", self._push_name(), self.channel_name())
        self._push_was_up = True

    def _subscribe_once(self, pid: int) -> None:
        """Redis pub/sub: like :meth:`_listen_once`, the heartbeat going through Redis."""
        from .push_redis import NoEcho

        assert self.redis is not None
        subscription = self.redis.subscribe()
        try:
            try:
                subscription.beat()
            except NoEcho:
                raise _NoEcho("first") from None
            self._push_connected()
            self._sync_quietly()  # anything committed before the subscription took hold
            next_beat = time.monotonic() + self.heartbeat
            while not self._stopped and self._threads_pid == pid:
                if self._behind(subscription.drain(timeout=0.2)):
                    self._sync_quietly()
                if time.monotonic() >= next_beat:
                    try:
                        announced = subscription.beat()
                    except NoEcho:
                        raise _NoEcho() from None
                    if self._behind(announced):
                        self._sync_quietly()
                    next_beat = time.monotonic() + self.heartbeat
        finally:
            subscription.close()

    def _behind(self, announced: list[int]) -> bool:
        """Whether any announced log number is one this replica has not read yet."""
        return any(seq > self._watermark and seq not in self._seen_above for seq in announced)

    def _drain(self, connection: Any, own: str, timeout: float) -> bool:
        """Wait up to ``timeout`` for notifications; True if a revocation was announced."""
        announced = False
        for notify in connection.notifies(timeout=timeout, stop_after=1):
            if notify.channel == NOTIFY_CHANNEL:
                announced = True
        return announced

    def _beat(self, connection: Any, own: str) -> None:
        """Send a NOTIFY to ourselves; it must come back within the store timeout."""
        with deadline(connection, self.store.timeout):
            connection.execute(f"NOTIFY {own}")
        until = time.monotonic() + self.store.timeout
        announced = False
        echoed = False
        while not echoed and (remaining := until - time.monotonic()) > 0:
            for notify in connection.notifies(timeout=remaining, stop_after=1):
                if notify.channel == own:
                    echoed = True
                elif notify.channel == NOTIFY_CHANNEL:
                    announced = True
        if announced:
            self._sync_quietly()
        if not echoed:
            raise _NoEcho()

    def _sync_quietly(self) -> None:
        """A sync from the LISTEN thread: a failure is the store's, not the connection's."""
        try:
            self.sync()
        except SQLAlchemyError as exc:
            self._failed(exc)
            logger.warning("flask_logout: revocation sync failed: %s", exc.__class__.__name__)
            self._wake.set()  # the poll thread retries on a fresh connection

    def probe_push(self) -> bool:
        """Open a LISTEN connection (or Redis subscription) once and check that a heartbeat comes back.

        For ``flask logout status``.
        """
        if self.redis is not None:
            return self._probe_redis()
        if not self.store.is_postgres:
            return False
        own = f"{NOTIFY_CHANNEL}_hb_{secrets.token_hex(6)}"
        try:
            connection: Any = self.store.connect_listener()
        except Exception as exc:
            self._push_error = exc.__class__.__name__
            return False
        try:
            with deadline(connection, self.store.timeout):
                connection.execute(f"LISTEN {own}")
            self._beat(connection, own)
        except _NoEcho:
            self._push_error = "notifications do not arrive"
            return False
        except Exception as exc:
            self._push_error = exc.__class__.__name__
            return False
        finally:
            with suppress(Exception):
                connection.close()
        self._push_error = None
        return True

    def _probe_redis(self) -> bool:
        from .push_redis import NoEcho

        assert self.redis is not None
        try:
            subscription = self.redis.subscribe()
        except Exception as exc:
            self._push_error = exc.__class__.__name__
            return False
        try:
            subscription.beat()
        except NoEcho:
            self._push_error = "notifications do not arrive"
            return False
        except Exception as exc:
            self._push_error = exc.__class__.__name__
            return False
        finally:
            subscription.close()
        self._push_error = None
        return True
