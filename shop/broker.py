"""PaymentCaptured over RabbitMQ: a confirmed publisher for the outbox relay, a consumer for notify.

Billing's ``OutboxRelay`` hands each outbox row to a ``QueuePublisher`` (its sink), which
returns only once the broker has confirmed the message is stored in a durable queue; the
relay marks the row sent after that. A crash in between publishes the event again, so the
queue carries each event *at least* once. A ``QueueConsumer`` in the notify process hands
each message to notify and acks it afterwards (a crash before the ack redelivers it);
notify dedupes by event id, so each payment is still notified exactly once.

Messages are the event's JSON (``PaymentCaptured.to_json``), persistent, ``message_id`` =
event id, published through the default exchange straight to the queue named by the
placement.

pika's ``BlockingConnection`` is not thread-safe: every connection here is used by one
thread only (a publisher's callers are serialised by a lock; a consumer's connection lives
in its own thread; ``backlog``, ``declare_queue`` and ``delete_queue`` open their own).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shop.errors import InvalidRequest, InvalidValue, NotFound, Unavailable
from shop.events import PaymentCaptured

if TYPE_CHECKING:
    from shop.notify.api import Notify

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0  # TCP + AMQP handshake, for the connections this module opens itself
CLOSE_TIMEOUT_S = 2.0  # a graceful close that takes longer is cut short
MAX_RECONNECT_DELAY_S = 5.0  # cap of the consumer's reconnect backoff
STOP_POLL_S = 0.1  # how often an idle consumer looks at its stop flag; bounds stop() latency
PERSISTENT = 2  # AMQP delivery_mode: the broker writes the message to disk
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}")

# What a broker or the network can throw at a connection in use. OSError for a socket
# error pika did not wrap.
BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)

T = TypeVar("T")


class _DeadlinePassed(pika.exceptions.AMQPConnectionError):
    """The broker did not answer in time; the connection was torn down."""


def check_url(url: str) -> str:
    """Return ``url`` if it is an ``amqp://`` or ``amqps://`` URL naming a host; raise
    InvalidValue otherwise. The message never repeats the password."""
    try:
        parts = urlsplit(url)
        parts.port  # parses the port, raising ValueError when it is not a number
    except (ValueError, TypeError, AttributeError):
        raise InvalidValue(f"the event broker URL {redacted(url)!r} is not a URL") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise InvalidValue(f"unsupported event broker URL {redacted(url)!r}: "
                           "expected amqp://USER:PASSWORD@HOST:PORT/VHOST (or amqps://)")
    try:
        pika.URLParameters(url)
    except (ValueError, TypeError) as exc:  # a malformed query option (?heartbeat=x)
        raise InvalidValue(f"bad event broker URL {redacted(url)!r}: {exc}") from None
    return url


def check_queue(queue: str) -> str:
    """Return ``queue`` if it is a usable queue name: 1 to 255 of ``A-Z a-z 0-9 _ . : -``,
    not starting with ``amq.`` (reserved by the broker). Raise InvalidValue otherwise."""
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise InvalidValue(f"bad queue name {queue!r}: use 1 to 255 of A-Z a-z 0-9 _ . : -")
    if queue.startswith("amq."):
        raise InvalidValue(f"bad queue name {queue!r}: names starting with 'amq.' are "
                           "reserved by the broker")
    return queue


def redacted(url: object) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    text = str(url)
    try:
        parts = urlsplit(text)
        if parts.password is None:
            return text
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparseable URL>"


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


def _parameters(url: str, connect_timeout_s: float,
                blocked_timeout_s: float | None = None) -> pika.URLParameters:
    parameters = pika.URLParameters(url)
    # One attempt bounded in time: the callers retry on their own schedule (the relay's
    # backoff, the consumer's), and a worker must not hang on a dead broker.
    parameters.connection_attempts = 1
    parameters.socket_timeout = connect_timeout_s
    parameters.stack_timeout = connect_timeout_s
    if blocked_timeout_s is not None:
        # A broker under a memory or disk alarm stops reading publishes; give up instead
        # of waiting for the alarm to clear.
        parameters.blocked_connection_timeout = blocked_timeout_s
    return parameters


def _connect(url: str, parameters: pika.URLParameters) -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(parameters)
    except BROKER_ERRORS as exc:
        raise Unavailable(f"the event broker at {_where(url)} is unavailable: "
                          f"{_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    # pika's AMQPConnectionError prints as '' when it wraps the workflow's error: show that.
    text = str(exc).strip() or "; ".join(str(arg) or repr(arg) for arg in exc.args).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _within(connection: pika.BlockingConnection, seconds: float, call: Callable[[], T]) -> T:
    """``call()`` (a blocking operation on ``connection``), but tear the connection down if
    the broker has not answered after ``seconds``: ``call`` then raises ``_DeadlinePassed``.

    pika has no public deadline for a blocking call: a confirm from a broker that went
    silent without closing the socket is otherwise waited for until the heartbeat check
    (negotiated, about a minute). The timer runs on the connection's own I/O loop, which
    ``call`` drives, and ends the stream the way pika's own heartbeat checker does.
    """
    impl = connection._impl  # noqa: SLF001 -- see the docstring

    def give_up() -> None:
        impl._terminate_stream(_DeadlinePassed(f"no answer within {seconds:g}s"))  # noqa: SLF001

    timer = impl.ioloop.call_later(seconds, give_up)
    try:
        return call()
    finally:
        impl.ioloop.remove_timeout(timer)


def _close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close ``connection`` if still open, within CLOSE_TIMEOUT_S, ignoring broker errors:
    it is being given up on."""
    if connection is None or not connection.is_open:
        return
    try:
        _within(connection, CLOSE_TIMEOUT_S, connection.close)
    except BROKER_ERRORS as exc:
        log.debug("event broker: closing a connection failed: %s", _reason(exc))


@contextmanager
def _short_connection(url: str) -> Iterator[BlockingChannel]:
    """A channel on a connection of its own, closed on exit. Connection failures and
    broker errors raise Unavailable (a channel error closed by the broker passes through
    as ``pika.exceptions.ChannelClosedByBroker`` for the caller to interpret)."""
    connection = _connect(url, _parameters(url, CONNECT_TIMEOUT_S))
    try:
        yield _within(connection, CONNECT_TIMEOUT_S, connection.channel)
    except pika.exceptions.ChannelClosedByBroker:
        raise
    except BROKER_ERRORS as exc:
        raise Unavailable(f"the event broker at {_where(url)} failed: {_reason(exc)}") from exc
    finally:
        _close_quietly(connection)


def declare_queue(url: str, queue: str) -> None:
    """Create the durable ``queue`` if it does not exist (idempotent). Raises InvalidValue
    for a bad URL or name, Unavailable when the broker cannot be reached or refuses (e.g.
    a queue of that name exists with other properties)."""
    check_url(url)
    check_queue(queue)
    try:
        with _short_connection(url) as channel:
            _within(channel.connection, CONNECT_TIMEOUT_S,
                    lambda: channel.queue_declare(queue=queue, durable=True))
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise Unavailable(f"the event broker refused to declare queue {queue!r}: "
                          f"{exc.reply_text}") from exc


def delete_queue(url: str, queue: str) -> None:
    """Delete ``queue`` and the messages in it; no error if it does not exist. Raises
    InvalidValue for a bad URL or name, Unavailable when the broker cannot be reached."""
    check_url(url)
    check_queue(queue)
    try:
        with _short_connection(url) as channel:
            _within(channel.connection, CONNECT_TIMEOUT_S,
                    lambda: channel.queue_delete(queue=queue))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:  # RabbitMQ answers delete-ok for a missing queue anyway
            raise Unavailable(f"the event broker refused to delete queue {queue!r}: "
                              f"{exc.reply_text}") from exc


def queue_backlog(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered to a consumer and not yet
    acked). Raises NotFound if the queue does not exist, Unavailable when the broker
    cannot be reached."""
    check_url(url)
    check_queue(queue)
    try:
        with _short_connection(url) as channel:
            declared = _within(channel.connection, CONNECT_TIMEOUT_S,
                               lambda: channel.queue_declare(queue=queue, passive=True))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            raise NotFound(f"the event broker has no queue {queue!r}") from exc
        raise Unavailable(f"the event broker refused to inspect queue {queue!r}: "
                          f"{exc.reply_text}") from exc
    return int(declared.method.message_count)


class QueuePublisher:
    """Publish PaymentCaptured events to a durable queue, one confirmed message at a time.

    Meant as the sink of an ``OutboxRelay``: ``deliver`` returns only once the broker has
    confirmed the message (persisted, routed to the queue). The connection is opened
    lazily by the first ``deliver`` and reused; construct before a fork freely, a forked
    child never touches a connection its parent opened. ``deliver`` is serialised by a
    lock, so sharing one publisher between threads is safe but gives no parallelism.
    """

    def __init__(self, url: str, queue: str, *, connect_timeout_s: float = 2.0,
                 confirm_timeout_s: float = 5.0) -> None:
        """``connect_timeout_s``: bound on opening a connection (TCP + AMQP handshake), in
        seconds. ``confirm_timeout_s``: bound on waiting for the broker's confirm of one
        message, in seconds (also how long a blocked broker, under a resource alarm, is
        waited for). Raises InvalidValue for a bad URL, queue name or timeout."""
        self.url = check_url(url)
        self.queue = check_queue(queue)
        for name, seconds in (("connect_timeout_s", connect_timeout_s),
                              ("confirm_timeout_s", confirm_timeout_s)):
            if not (math.isfinite(seconds) and seconds > 0):
                raise InvalidValue(f"{name} must be a positive number of seconds")
        self._connect_timeout_s = connect_timeout_s
        self._confirm_timeout_s = confirm_timeout_s
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._owner_pid = 0  # the process that opened self._connection

    def deliver(self, event: PaymentCaptured) -> None:
        """Publish ``event`` and wait for the broker's confirm (at most about
        connect_timeout_s + confirm_timeout_s seconds).

        Raises Unavailable when the broker cannot be reached, nacks the message, cannot
        route it (the queue is gone), or the connection drops or stalls; the broken
        connection is closed first, so the next call reconnects. After an Unavailable the
        message may or may not be in the queue: deliver it again (the consumer dedupes).
        """
        body = json.dumps(event.to_json(), separators=(",", ":")).encode()
        properties = pika.BasicProperties(content_type="application/json",
                                          delivery_mode=PERSISTENT,
                                          message_id=event.event_id)
        with self._lock:
            channel = self._ready_channel()
            try:
                _within(channel.connection, self._confirm_timeout_s,
                        lambda: channel.basic_publish(exchange="", routing_key=self.queue,
                                                      body=body, properties=properties,
                                                      mandatory=True))
            except pika.exceptions.UnroutableError:
                self._discard()
                raise Unavailable(f"the event broker could not route event {event.event_id} "
                                  f"to queue {self.queue!r} (deleted?)") from None
            except pika.exceptions.NackError:
                self._discard()
                raise Unavailable(f"the event broker refused event {event.event_id} "
                                  "(nack)") from None
            except BROKER_ERRORS as exc:
                self._discard()
                raise Unavailable(f"the event broker at {_where(self.url)} failed while "
                                  f"publishing: {_reason(exc)}") from exc

    def close(self) -> None:
        """Close the connection, if any (the next ``deliver`` opens a new one)."""
        with self._lock:
            self._discard()

    def _ready_channel(self) -> BlockingChannel:
        """The open confirm-mode channel, (re)connecting if needed; raises Unavailable."""
        if self._connection is not None and self._owner_pid != os.getpid():
            # Inherited through a fork: the socket is the parent's, closing it would
            # close the parent's connection. Forget it.
            self._connection = self._channel = None
        if self._connection is not None:
            try:
                # An idle BlockingConnection reads nothing: let it notice now that the
                # broker closed it (restart, missed heartbeats) and answer heartbeats, so
                # a stale connection costs a reconnect rather than a failed delivery.
                self._connection.process_data_events(time_limit=0)
            except BROKER_ERRORS as exc:
                log.info("event broker: reconnecting after %s", _reason(exc))
                self._discard()
        if (self._connection is None or not self._connection.is_open
                or self._channel is None or not self._channel.is_open):
            self._discard()
            self._open()
        assert self._channel is not None
        return self._channel

    def _open(self) -> None:
        connection = _connect(self.url, _parameters(self.url, self._connect_timeout_s,
                                                    blocked_timeout_s=self._confirm_timeout_s))
        try:
            def open_channel() -> BlockingChannel:
                channel = connection.channel()
                channel.confirm_delivery()
                # Declared here too so that events published before any consumer ran
                # are kept rather than refused as unroutable.
                channel.queue_declare(queue=self.queue, durable=True)
                return channel
            channel = _within(connection, self._connect_timeout_s, open_channel)
        except BROKER_ERRORS as exc:
            _close_quietly(connection)
            raise Unavailable(f"the event broker at {_where(self.url)} refused a publishing "
                              f"channel on queue {self.queue!r}: {_reason(exc)}") from exc
        self._connection, self._channel, self._owner_pid = connection, channel, os.getpid()

    def _discard(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and self._owner_pid == os.getpid():
            _close_quietly(connection)


class QueueConsumer:
    """Hand the events of a durable queue to notify, acking each after notify took it.

    ``start`` runs a daemon thread that (re)connects while the broker is down, with a
    backoff from ``retry_s`` doubling up to MAX_RECONNECT_DELAY_S (each failure logged at
    warning), declares the durable queue, and consumes with manual acks and at most
    ``prefetch`` unacked messages in flight. For each message:

    - ``notify.deliver(event)`` returns: the message is acked.
    - The message is not an event notify will ever accept (not JSON, not an object with
      the event's fields, NaN/Infinity, or notify raises InvalidRequest/InvalidValue): it
      is rejected without requeue, i.e. **dropped**, and logged at error level. There is
      no dead-letter exchange.
    - Anything else fails (Unavailable: notify's database busy, ...): after ``retry_s``
      seconds the message is nacked with requeue, so it is delivered again; nothing is
      lost. A message that fails this way forever is retried forever, every ``retry_s``.

    A message being handled when the consumer stops or its process dies is not acked and
    goes to the next consumer: delivery is at least once; notify dedupes by event id.
    Start the consumer in the process that will run it (after any fork).
    """

    def __init__(self, url: str, queue: str, notify: "Notify", *, prefetch: int = 16,
                 retry_s: float = 0.5) -> None:
        """``prefetch``: unacked messages the broker may send ahead, 1 to 65535.
        ``retry_s``: seconds before a failed message is requeued, and the first reconnect
        delay. Raises InvalidValue for a bad URL, queue name, prefetch or retry_s."""
        self.url = check_url(url)
        self.queue = check_queue(queue)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) \
                or not 1 <= prefetch <= 65535:
            raise InvalidValue("prefetch must be a whole number from 1 to 65535")
        if not (math.isfinite(retry_s) and retry_s >= 0):
            raise InvalidValue("retry_s must be a non-negative number of seconds")
        self._notify = notify
        self._prefetch = prefetch
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start consuming in a daemon thread. Raises RuntimeError if it already runs."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"the consumer of queue {self.queue!r} is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"queue-consumer-{self.queue}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the consumer to stop, and wait up to ``timeout_s`` seconds for its thread
        to cancel the consumer (unhandled prefetched messages go back to the queue) and
        close the connection. An idle consumer stops within about STOP_POLL_S; one inside
        ``notify.deliver`` stops once that returns. ``stop(0)`` only asks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """Whether the consumer's thread is alive (it may be between connections)."""
        return self._thread is not None and self._thread.is_alive()

    def backlog(self) -> int:
        """Messages ready in the queue, waiting for a consumer (those handed to a consumer
        and not yet acked are not counted), read on a short-lived connection of its own.
        Raises Unavailable when the broker cannot be reached, NotFound when the queue does
        not exist."""
        return queue_backlog(self.url, self.queue)

    def _run(self) -> None:
        delay = self._retry_s or STOP_POLL_S
        while not self._stop.is_set():
            connection = None
            try:
                connection = _connect(self.url, _parameters(self.url, CONNECT_TIMEOUT_S))
                log.info("event consumer: connected to %s, consuming queue %r",
                         _where(self.url), self.queue)
                delay = self._retry_s or STOP_POLL_S
                self._consume(connection)
            except Unavailable as exc:
                log.warning("event consumer: %s; retrying in %.2fs", exc.detail, delay)
            except BROKER_ERRORS as exc:
                log.warning("event consumer: connection to %s lost (%s); reconnecting in "
                            "%.2fs", _where(self.url), _reason(exc), delay)
            except Exception:  # never lose the thread, whatever goes wrong
                log.exception("event consumer: unexpected error; reconnecting in %.2fs", delay)
            finally:
                _close_quietly(connection)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
        log.info("event consumer: stopped consuming queue %r", self.queue)

    def _consume(self, connection: pika.BlockingConnection) -> None:
        """Consume until stop() or until the broker cancels; raises on a broken connection."""
        channel = connection.channel()
        channel.queue_declare(queue=self.queue, durable=True)
        channel.basic_qos(prefetch_count=self._prefetch)
        # The inactivity timeout wakes the loop while the queue is idle, to see stop().
        for method, _properties, body in channel.consume(self.queue, auto_ack=False,
                                                          inactivity_timeout=STOP_POLL_S):
            if self._stop.is_set():  # a message yielded now stays unacked: closing requeues it
                break
            if method is not None:
                self._handle(connection, channel, method.delivery_tag, body)
        if not self._stop.is_set():  # the generator ends only when the broker cancels us
            log.warning("event consumer: the broker cancelled consuming queue %r "
                        "(deleted?)", self.queue)
            return
        # Hand back, with requeue, what was prefetched but not handled (closing would too,
        # later). The caller closes the connection.
        _within(connection, CLOSE_TIMEOUT_S, channel.cancel)

    def _handle(self, connection: pika.BlockingConnection, channel: BlockingChannel,
                tag: int, body: bytes) -> None:
        try:
            event = PaymentCaptured.from_json(json.loads(body, parse_constant=_refuse_constant,
                                                         parse_float=_finite_float))
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            log.error("event consumer: dropped a malformed message from queue %r "
                      "(%s): %.200r", self.queue, _reason(exc), body)
            channel.basic_reject(delivery_tag=tag, requeue=False)
            return
        try:
            self._notify.deliver(event)
        except (InvalidRequest, InvalidValue) as exc:
            log.error("event consumer: notify refused event %s, dropped: %s",
                      event.event_id, exc)
            channel.basic_reject(delivery_tag=tag, requeue=False)
            return
        except Exception as exc:  # noqa: BLE001 -- any other failure may pass: retry it
            log.warning("event consumer: notify failed on event %s, requeueing in %.2fs: %s",
                        event.event_id, self._retry_s, _reason(exc))
            self._pause(connection, self._retry_s)
            channel.basic_nack(delivery_tag=tag, requeue=True)
            return
        channel.basic_ack(delivery_tag=tag)

    def _pause(self, connection: pika.BlockingConnection, seconds: float) -> None:
        """Wait ``seconds`` while keeping the connection serviced (heartbeats); cut short
        by stop(), since the message is requeued either way."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            connection.process_data_events(time_limit=min(remaining, STOP_POLL_S))


def _refuse_constant(name: str) -> float:
    # Standard JSON has no NaN or Infinity; notify would store NaN as NULL and fail on
    # every retry, so such a message is malformed.
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to infinity
        raise ValueError(f"{text} is out of range")
    return value
