"""The builder's client rides out a master that does not answer, but not past the builder's stop."""

from __future__ import annotations

import threading
import time

import pytest

from tests.helpers import free_port
from wheelmill.builder import client as client_module
from wheelmill.builder.client import MasterClient, Stopping


def test_a_claim_waiting_for_a_silent_master_gives_up_when_the_builder_stops() -> None:
    client = MasterClient(f"http://127.0.0.1:{free_port()}/", "token", patience=600)  # nothing listens
    threading.Timer(1.0, client.stopping.set).start()
    started = time.monotonic()

    with pytest.raises(Stopping, match="claim"):
        client.claim()

    assert time.monotonic() - started < 5  # not the 600 s a running builder would wait
    client.close()


def test_handing_a_job_back_to_a_silent_master_gives_up_and_leaves_it_to_the_lease(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "RELEASE_PATIENCE", 2.0)
    client = MasterClient(f"http://127.0.0.1:{free_port()}/", "token", patience=600)  # nothing listens
    started = time.monotonic()

    client.release("some-lease")  # returns: a stopping builder is not held up for the patience

    assert time.monotonic() - started < 2.0 + 5
    assert "returns to the queue when its lease expires" in caplog.text
    client.close()
