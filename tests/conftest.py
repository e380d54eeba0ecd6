"""Shared pytest fixtures: a real Mosquitto broker, a fault-injecting proxy, subscribers.

A test that needs the broker fails loudly when the ``mosquitto`` binary is missing, unless
``EDGE_RUNTIME_ALLOW_SKIP_BROKER=1`` asks to skip it (see
:func:`tests.support.broker.require_mosquitto`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import MosquittoBroker, require_mosquitto
from tests.support.proxy import TcpProxy
from tests.support.subscriber import SeqSubscriber

BrokerFactory = Callable[..., MosquittoBroker]
SubscriberFactory = Callable[..., SeqSubscriber]


def _close_with_log(broker: MosquittoBroker) -> None:
    """Stop the broker; print its log tail (pytest shows it only when the test failed)."""
    try:
        broker.close()
    finally:
        print(f"--- {broker!r} log tail ---\n{broker.log_tail()}")


@pytest.fixture(scope="session")
def mosquitto_path() -> str:
    """Path of the mosquitto binary; fails (or skips when allowed) when it is missing."""
    return require_mosquitto()


@pytest.fixture
def broker(mosquitto_path: str, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A started broker with the default test config, always stopped at teardown."""
    instance = MosquittoBroker(workdir=tmp_path / "mosquitto", mosquitto_path=mosquitto_path)
    try:
        instance.start()
        yield instance
    finally:
        _close_with_log(instance)


@pytest.fixture
def broker_factory(mosquitto_path: str, tmp_path: Path) -> Iterator[BrokerFactory]:
    """Make started brokers with custom options (users, TLS, ...); all stopped at teardown."""
    made: list[MosquittoBroker] = []

    def make(**kwargs: Any) -> MosquittoBroker:
        kwargs.setdefault("workdir", tmp_path / f"mosquitto-{len(made)}")
        kwargs.setdefault("mosquitto_path", mosquitto_path)
        instance = MosquittoBroker(**kwargs)
        made.append(instance)
        instance.start()
        return instance

    try:
        yield make
    finally:
        for instance in made:
            _close_with_log(instance)


@pytest.fixture
def proxy(broker: MosquittoBroker) -> Iterator[TcpProxy]:
    """A TcpProxy in front of ``broker``, closed at teardown."""
    with TcpProxy(broker.host, broker.port) as instance:
        yield instance


@pytest.fixture
def subscriber_factory() -> Iterator[SubscriberFactory]:
    """Make started SeqSubscribers (same arguments as SeqSubscriber); all stopped at teardown."""
    made: list[SeqSubscriber] = []

    def make(*args: Any, **kwargs: Any) -> SeqSubscriber:
        instance = SeqSubscriber(*args, **kwargs)
        made.append(instance)
        instance.start()
        return instance

    try:
        yield make
    finally:
        for instance in made:
            instance.stop()


BROKER_FIXTURES = frozenset({"mosquitto_path", "broker", "broker_factory", "proxy"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a broker fixture with ``broker`` (``-m "not broker"``)."""
    for item in items:
        if BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)
