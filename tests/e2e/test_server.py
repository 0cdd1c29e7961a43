"""The API under gunicorn on a real socket, as ``energy serve`` runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.ids import fresh_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, body: object | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(databases: Any) -> Iterator[str]:
    url = databases.create()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "ENERGY_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "main", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(f"{base}/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("energy serve did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_original_api_calls_work_over_http(server: str) -> None:
    now = int(datetime.now(UTC).timestamp())
    meter_id, vehicle_id = fresh_id("M"), fresh_id("V")
    status, body = request(
        f"{server}/v1/ingest",
        {"meterId": meter_id, "kwhConsumedAc": 15.5, "voltage": 230.2, "timestamp": now},
    )
    assert (status, body["status"]) == (202, "accepted")
    status, body = request(
        f"{server}/v1/ingest",
        {
            "vehicleId": vehicle_id,
            "soc": 80,
            "kwhDeliveredDc": 12.3,
            "batteryTemp": 34.5,
            "timestamp": now,
        },
    )
    assert (status, body["status"]) == (202, "accepted")
    status, body = request(f"{server}/v1/mappings", {"vehicleId": vehicle_id, "meterId": meter_id})
    assert (status, body["status"]) == (202, "accepted")
    assert request(f"{server}/health") == (200, {"status": "ok"})


def test_many_clients_posting_the_same_reading_at_once_store_it_once(server: str) -> None:
    reading = {
        "meterId": fresh_id("M"),
        "kwhConsumedAc": 1.25,
        "voltage": 231.0,
        "timestamp": int(datetime.now(UTC).timestamp()),
    }
    barrier = threading.Barrier(16)
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        answer = request(f"{server}/v1/ingest", reading)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=post) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(status == 202 for status, _ in answers)
    statuses = sorted(body["status"] for _, body in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 15
    assert len({body["position"] for _, body in answers}) == 1
