"""shop.broker against the real RabbitMQ: confirmed publishing, consuming into a real
NotifyService on SQLite, redelivery, dedupe, dropping malformed messages, and failures (no
broker, a silent broker, cut connections, a deleted queue) through a small TCP proxy."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pytest

from shop.broker import (QueueConsumer, QueuePublisher, check_queue, check_url, declare_queue,
                         delete_queue, queue_backlog)
from shop.errors import InvalidValue, NotFound, Unavailable
from shop.events import PaymentCaptured
from shop.notify.service import SCHEMA, NotifyService
from shop.storage import Database, open_database
from tests.servers import RABBITMQ_URL, require_rabbitmq

pytestmark = pytest.mark.timeout(30)  # each test takes a few seconds at most

WAIT_S = 5.0  # how long a test waits for something that should happen at once


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def payment(n: int = 0) -> PaymentCaptured:
    return PaymentCaptured(event_id=uuid.uuid4().hex, order_id=f"order-{n}", user_id="user-1",
                           total_cents=1000 + n, occurred_at=time.time())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def url_at(port: int) -> str:
    """RABBITMQ_URL with its host and port replaced by 127.0.0.1:port."""
    parts = urlsplit(RABBITMQ_URL)
    credentials = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{credentials}@127.0.0.1:{port}").geturl()


def publish_raw(queue: str, body: bytes) -> None:
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange="", routing_key=queue, body=body, mandatory=True)


def consumers_on(queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as connection:
        declared = connection.channel().queue_declare(queue=queue, passive=True)
        return declared.method.consumer_count


def consumer_threads(queue: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"queue-consumer-{queue}"]


class RecordingNotify:
    """A real NotifyService that remembers each delivery attempt and what it returned."""

    def __init__(self, service: NotifyService) -> None:
        self.service = service
        self.attempts: list[tuple[str, float]] = []  # (event id, time.monotonic())
        self.results: list[tuple[str, bool]] = []
        self._lock = threading.Lock()

    def deliver(self, event: PaymentCaptured) -> bool:
        with self._lock:
            self.attempts.append((event.event_id, time.monotonic()))
        self.before(event)
        stored = self.service.deliver(event)
        with self._lock:
            self.results.append((event.event_id, stored))
        return stored

    def before(self, event: PaymentCaptured) -> None:
        """Override to fail or block before the real delivery."""

    def attempted(self, event_id: str) -> int:
        with self._lock:
            return sum(1 for attempted, _ in self.attempts if attempted == event_id)


class TcpProxy:
    """Forwards a loopback port to RabbitMQ. It can refuse connections (a broker that is
    down), freeze (a broker that went silent without closing its sockets) and cut the
    connections it carries (a broker restart)."""

    def __init__(self) -> None:
        target = urlsplit(RABBITMQ_URL)
        self._target = (target.hostname or "127.0.0.1", target.port or 5672)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = url_at(self.port)
        self.accepting = threading.Event()
        self.accepting.set()
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        for thread in self._threads:
            thread.join(1.0)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.accepting.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self._target, timeout=2.0)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                self._threads.append(pump)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.05)
        while not self._closed.is_set():
            if self.frozen.is_set():
                time.sleep(0.02)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            while self.frozen.is_set() and not self._closed.is_set():
                time.sleep(0.02)  # what was read as the freeze began is held, too
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def queue() -> Iterator[str]:
    require_rabbitmq()
    name = f"seambench-test-{uuid.uuid4().hex}"
    yield name
    delete_queue(RABBITMQ_URL, name)


@pytest.fixture
def notify_db(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'n.db'}")
    db.apply_schema(SCHEMA)
    yield db
    db.close()


@pytest.fixture
def notify(notify_db: Database) -> RecordingNotify:
    return RecordingNotify(NotifyService(notify_db))


def stored(db: Database) -> set[str]:
    return {row["event_id"] for row in db.query("SELECT event_id FROM notify_notifications")}


@pytest.fixture
def publisher(queue: str) -> Iterator[QueuePublisher]:
    sink = QueuePublisher(RABBITMQ_URL, queue)
    yield sink
    sink.close()


@pytest.fixture
def consumers() -> Iterator[list[QueueConsumer]]:
    """Consumers appended here are stopped at teardown, even when the test failed."""
    started: list[QueueConsumer] = []
    yield started
    for consumer in started:
        consumer.stop(timeout_s=5.0)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    require_rabbitmq()
    forwarder = TcpProxy()
    yield forwarder
    forwarder.close()


def consume(consumers: list[QueueConsumer], queue: str, notify: object, url: str = RABBITMQ_URL,
            **options: float) -> QueueConsumer:
    consumer = QueueConsumer(url, queue, notify, **options)  # type: ignore[arg-type]
    consumers.append(consumer)
    consumer.start()
    return consumer


def test_each_published_event_is_notified_once(queue, publisher, notify, notify_db, consumers):
    events = [payment(n) for n in range(50)]
    consume(consumers, queue, notify)
    for event in events:
        publisher.deliver(event)
    assert wait_until(lambda: len(stored(notify_db)) == len(events)), \
        f"{len(stored(notify_db))} of {len(events)} notified"
    assert stored(notify_db) == {event.event_id for event in events}
    assert sorted(notify.results) == sorted((event.event_id, True) for event in events)
    assert queue_backlog(RABBITMQ_URL, queue) == 0


def test_message_properties(queue, publisher):
    event = payment()
    publisher.deliver(event)
    with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as connection:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
    assert method is not None, "the published message is not in the queue"
    assert properties.delivery_mode == 2
    assert properties.message_id == event.event_id
    assert properties.content_type == "application/json"
    assert PaymentCaptured.from_json(json.loads(body)) == event


def test_an_event_published_twice_is_notified_once(queue, publisher, notify, notify_db,
                                                   consumers):
    twice, after = payment(1), payment(2)
    for event in (twice, twice, after):
        publisher.deliver(event)
    consume(consumers, queue, notify)
    # One consumer handles messages in queue order: once `after` is stored, both copies
    # of `twice` have been through notify.
    assert wait_until(lambda: after.event_id in stored(notify_db))
    assert [stored_now for event_id, stored_now in notify.results if event_id == twice.event_id] \
        == [True, False], "the duplicate must reach notify, which keeps only the first"
    assert stored(notify_db) == {twice.event_id, after.event_id}


def test_a_failed_delivery_is_requeued_and_delivered_later(queue, publisher, notify, notify_db,
                                                           consumers):
    failed_once: set[str] = set()

    def busy_the_first_time(event: PaymentCaptured) -> None:
        if event.event_id not in failed_once:
            failed_once.add(event.event_id)
            raise Unavailable("database busy")

    notify.before = busy_the_first_time
    event = payment()
    retry_s = 0.3
    consume(consumers, queue, notify, retry_s=retry_s)
    publisher.deliver(event)
    assert wait_until(lambda: event.event_id in stored(notify_db)), "the event was lost"
    (_, first), (_, second) = notify.attempts
    assert second - first >= retry_s * 0.9, "requeued without waiting retry_s"
    assert queue_backlog(RABBITMQ_URL, queue) == 0


def test_a_malformed_message_is_dropped_and_the_consumer_goes_on(
        queue, publisher, notify, notify_db, consumers, caplog):
    fields = {"event_id": "e", "order_id": "o", "user_id": "u", "total_cents": 1,
              "occurred_at": 1.0}
    malformed = [b"not json", b"\xff\xfe", b"[1, 2]", b"null", b'{"event_id": "missing"}',
                 json.dumps({**fields, "total_cents": "ten"}).encode(),
                 json.dumps({**fields, "occurred_at": float("nan")}).encode(),
                 json.dumps(fields).replace('"occurred_at": 1.0', '"occurred_at": 1e999')
                 .encode()]
    refused, good = payment(1), payment(2)

    def refuse(event: PaymentCaptured) -> None:
        if event.event_id == refused.event_id:
            raise InvalidValue("no such user")

    notify.before = refuse
    declare_queue(RABBITMQ_URL, queue)
    for body in malformed:
        publish_raw(queue, body)
    publisher.deliver(refused)
    publisher.deliver(good)
    caplog.set_level(logging.ERROR, logger="shop.broker")
    consume(consumers, queue, notify)
    assert wait_until(lambda: good.event_id in stored(notify_db)), \
        "the consumer stopped at a malformed message"
    time.sleep(0.3)  # time for a message wrongly requeued to come round again
    dropped = [r for r in caplog.records if r.name == "shop.broker" and r.levelno == logging.ERROR]
    assert len(dropped) == len(malformed) + 1, [r.getMessage() for r in dropped]
    assert notify.attempted(refused.event_id) == 1, "a refused event must not be retried"
    assert stored(notify_db) == {good.event_id}
    assert queue_backlog(RABBITMQ_URL, queue) == 0


def test_deliver_without_a_broker_raises_unavailable_quickly():
    publisher = QueuePublisher(url_at(free_port()).replace("guest:guest", "guest:s3cret"),
                               "orphan", connect_timeout_s=1.0)
    for _ in range(2):  # the second call tries again rather than reusing a broken state
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            publisher.deliver(payment())
        assert time.monotonic() - started < 2.0
        assert "event broker" in str(raised.value)
        assert "s3cret" not in str(raised.value)
    publisher.close()


def test_a_silent_broker_fails_the_delivery_after_the_confirm_timeout(queue, proxy):
    publisher = QueuePublisher(proxy.url, queue, confirm_timeout_s=1.0)
    try:
        publisher.deliver(payment(1))
        proxy.frozen.set()
        started = time.monotonic()
        with pytest.raises(Unavailable, match="event broker"):
            publisher.deliver(payment(2))
        assert 0.9 <= time.monotonic() - started < 2.5
        proxy.frozen.clear()
        publisher.deliver(payment(3))  # on a new connection
    finally:
        publisher.close()
    # The stalled message may or may not have reached the broker (it is at least once).
    assert queue_backlog(RABBITMQ_URL, queue) in (2, 3)


def test_a_deleted_queue_fails_the_delivery_and_the_next_one_recreates_it(queue, publisher):
    publisher.deliver(payment(1))
    delete_queue(RABBITMQ_URL, queue)
    with pytest.raises(Unavailable, match="could not route"):
        publisher.deliver(payment(2))
    publisher.deliver(payment(3))
    assert queue_backlog(RABBITMQ_URL, queue) == 1


def test_a_publisher_reconnects_after_its_connection_was_cut(queue, proxy):
    publisher = QueuePublisher(proxy.url, queue)
    try:
        publisher.deliver(payment(1))
        proxy.cut()
        publisher.deliver(payment(2))  # notices the dead connection before publishing
        publisher.close()
        publisher.deliver(payment(3))
    finally:
        publisher.close()
    assert queue_backlog(RABBITMQ_URL, queue) == 3


def test_a_consumer_waits_for_the_broker_and_survives_a_cut(queue, publisher, proxy, notify,
                                                           notify_db, consumers):
    proxy.accepting.clear()  # the broker is "down"
    consumer = consume(consumers, queue, notify, url=proxy.url, retry_s=0.1)
    time.sleep(0.5)
    assert consumer.running, "the consumer gave up while the broker was down"
    proxy.accepting.set()
    first, second = payment(1), payment(2)
    publisher.deliver(first)
    assert wait_until(lambda: first.event_id in stored(notify_db))
    proxy.cut()
    publisher.deliver(second)
    assert wait_until(lambda: second.event_id in stored(notify_db))


def test_a_consumer_whose_queue_is_deleted_declares_it_again(queue, publisher, notify,
                                                              notify_db, consumers):
    consume(consumers, queue, notify, retry_s=0.1)
    before, after = payment(1), payment(2)
    publisher.deliver(before)
    assert wait_until(lambda: before.event_id in stored(notify_db))
    delete_queue(RABBITMQ_URL, queue)  # the broker cancels the consumer

    def declared_again() -> bool:
        try:
            return queue_backlog(RABBITMQ_URL, queue) == 0
        except NotFound:
            return False

    assert wait_until(declared_again)
    publisher.deliver(after)  # routed by name: the new queue takes it
    assert wait_until(lambda: after.event_id in stored(notify_db))


def test_stop_is_prompt_and_leaves_no_thread(queue, publisher, notify, notify_db, consumers):
    consumer = consume(consumers, queue, notify)
    event = payment()
    publisher.deliver(event)
    assert wait_until(lambda: event.event_id in stored(notify_db))
    assert consumers_on(queue) == 1
    started = time.monotonic()
    consumer.stop()
    assert time.monotonic() - started < 1.0
    assert not consumer.running
    assert consumer_threads(queue) == []
    assert consumers_on(queue) == 0, "the broker still sees the consumer"


def test_stop_is_prompt_while_the_broker_is_down(notify, consumers):
    require_rabbitmq()
    orphan = f"seambench-test-{uuid.uuid4().hex}"
    consumer = consume(consumers, orphan, notify, url=url_at(free_port()), retry_s=0.1)
    time.sleep(0.5)  # a few failed connection attempts
    started = time.monotonic()
    consumer.stop()
    assert time.monotonic() - started < 1.0
    assert consumer_threads(orphan) == []


def test_backlog_counts_what_waits_for_a_consumer(queue, publisher, notify, notify_db, consumers):
    events = [payment(n) for n in range(5)]
    for event in events:
        publisher.deliver(event)
    consumer = QueueConsumer(RABBITMQ_URL, queue, notify)
    assert consumer.backlog() == len(events)
    consumers.append(consumer)
    consumer.start()
    assert wait_until(lambda: len(stored(notify_db)) == len(events))
    assert consumer.backlog() == 0


def test_backlog_of_a_missing_queue_or_broker(queue):
    with pytest.raises(NotFound):
        queue_backlog(RABBITMQ_URL, queue)
    with pytest.raises(Unavailable, match="event broker"):
        queue_backlog(url_at(free_port()), queue)


def test_declare_and_delete_are_idempotent(queue):
    declare_queue(RABBITMQ_URL, queue)
    declare_queue(RABBITMQ_URL, queue)
    assert queue_backlog(RABBITMQ_URL, queue) == 0
    delete_queue(RABBITMQ_URL, queue)
    delete_queue(RABBITMQ_URL, queue)
    with pytest.raises(NotFound):
        queue_backlog(RABBITMQ_URL, queue)


@pytest.mark.parametrize("in_hand", ["completes", "fails"])
def test_what_a_stopped_consumer_did_not_ack_goes_to_the_next(queue, publisher, notify_db,
                                                              consumers, in_hand):
    """Notify blocks on the first message until the consumer is asked to stop; the others
    wait, prefetched and unacked, in that consumer. Only the message notify finished may
    be acked: the rest goes to the next consumer."""
    entered, release = threading.Event(), threading.Event()
    blocking = RecordingNotify(NotifyService(notify_db))

    def block_on_the_first(event: PaymentCaptured) -> None:
        if len(blocking.attempts) == 1:
            entered.set()
            assert release.wait(WAIT_S)
            if in_hand == "fails":
                raise RuntimeError("interrupted by the shutdown")

    blocking.before = block_on_the_first
    first = consume(consumers, queue, blocking)
    events = [payment(n) for n in range(3)]
    for event in events:
        publisher.deliver(event)
    assert entered.wait(WAIT_S)
    # All three are with the consumer (none ready) before it is asked to stop.
    assert wait_until(lambda: queue_backlog(RABBITMQ_URL, queue) == 0)
    first.stop(timeout_s=0)  # only asks: notify is still blocked
    release.set()
    first.stop(timeout_s=WAIT_S)
    assert not first.running
    assert [event_id for event_id, _ in blocking.attempts] == [events[0].event_id], \
        "the consumer took another message after it was asked to stop"
    handed_back = events[1:] if in_hand == "completes" else events
    assert wait_until(lambda: queue_backlog(RABBITMQ_URL, queue) == len(handed_back))

    following = RecordingNotify(NotifyService(notify_db))
    consume(consumers, queue, following)
    assert wait_until(lambda: len(stored(notify_db)) == len(events))
    assert sorted(event_id for event_id, _ in following.attempts) \
        == sorted(event.event_id for event in handed_back)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5672/", "127.0.0.1:5672", "amqp://",
                                 "amqp://127.0.0.1:port/", "amqp://h/?heartbeat=soon", ""])
def test_a_bad_url_is_refused(url):
    with pytest.raises(InvalidValue):
        check_url(url)
    with pytest.raises(InvalidValue):
        QueuePublisher(url, "events")


def test_a_bad_url_message_hides_the_password():
    with pytest.raises(InvalidValue) as raised:
        check_url("amqp://guest:s3cret@h/?heartbeat=soon")
    assert "s3cret" not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["", "has space", "semi;colon", "ü", "x" * 256, "amq.events"])
def test_a_bad_queue_name_is_refused(name):
    with pytest.raises(InvalidValue):
        check_queue(name)
    with pytest.raises(InvalidValue):
        QueueConsumer(RABBITMQ_URL, name, object())  # type: ignore[arg-type]


def test_good_names_pass():
    assert check_url(RABBITMQ_URL) == RABBITMQ_URL
    secure = "amqps://u:p@broker.example:5671/shop"
    assert check_url(secure) == secure
    assert check_queue("seambench.payments:v1-a_b") == "seambench.payments:v1-a_b"
