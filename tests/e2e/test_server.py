"""The API under gunicorn on a real socket, as ``energy serve`` runs it."""

from __future__ import annotations

import contextlib
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
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.harness import ESTABLISHED, LISTEN, tcp_sockets
from tests.ids import fresh_id
from tests.projection_runs import project_through


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TOKEN: dict[str, str] = {}  # the operator token the server fixture creates
DATABASE: dict[str, str] = {}  # and the database it serves
MASTER: dict[str, int] = {}  # and the gunicorn master's process id and port


def request(
    url: str, body: object | None = None, token: str | None = ""
) -> tuple[int, dict[str, Any]]:
    """``token`` "" means the fixture's operator token, ``None`` no Authorization at all."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    token = TOKEN.get("operator") if token == "" else token
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(databases: Any) -> Iterator[str]:
    url = databases.create()
    DATABASE["url"] = url
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENERGY_LOG_LEVEL": "warning",
        "ENERGY_TOKEN_KEY": "the e2e server's token key",
    }
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "main",
            "tokens",
            "create",
            "--identity",
            "e2e",
            "--role",
            "operator",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    TOKEN["operator"] = created.stdout.splitlines()[-1]
    process = subprocess.Popen(
        [sys.executable, "-m", "main", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    MASTER.update(pid=process.pid, port=port)
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


def post_and_project(
    server: str, readings: list[dict[str, Any]], vehicle_id: str, meter_id: str
) -> int:
    """Post ``readings``, map the vehicle to the meter and project through that mapping:
    the mapping's position, which every projection has then reached."""
    status, body = request(f"{server}/v1/ingest", readings)
    assert status == 202, body
    status, mapped = request(
        f"{server}/v1/mappings", {"vehicleId": vehicle_id, "meterId": meter_id}
    )
    assert status == 202, mapped
    with psycopg.connect(DATABASE["url"], autocommit=True) as conn:
        project_through(conn, mapped["position"])
    return int(mapped["position"])


def test_analytics_over_http_answer_from_the_projections_on_either_path(server: str) -> None:
    # Without a position the worker answers on its event loop (asynchronous connections);
    # with one it waits in a pool thread: both must give the same figures.
    end = int(datetime.now(UTC).timestamp()) // 60 * 60 - 60
    meter_id, vehicle_id = fresh_id("M"), fresh_id("V")
    posted = [
        {"meterId": meter_id, "kwhConsumedAc": 1.0, "voltage": 230.0, "timestamp": end - 60},
        {"meterId": meter_id, "kwhConsumedAc": 2.5, "voltage": 231.0, "timestamp": end},
        {
            "vehicleId": vehicle_id,
            "soc": 50,
            "kwhDeliveredDc": 0.9,
            "batteryTemp": 20.0,
            "timestamp": end - 60,
        },
        {
            "vehicleId": vehicle_id,
            "soc": 52,
            "kwhDeliveredDc": 2.0,
            "batteryTemp": 30.0,
            "timestamp": end,
        },
        {
            "vehicleId": vehicle_id,
            "soc": 53,
            "kwhDeliveredDc": 5.0,
            "batteryTemp": 90.0,
            "timestamp": end + 30,
        },  # after the window: not counted
    ]
    position = post_and_project(server, posted, vehicle_id, meter_id)

    path = f"{server}/v1/analytics/performance/{vehicle_id}?to={end}"
    status, on_the_loop = request(path)
    assert status == 200, on_the_loop
    assert on_the_loop["meterIds"] == [meter_id]
    assert on_the_loop["dcKwh"] == pytest.approx(0.9 + 2.0)
    assert on_the_loop["acKwh"] == pytest.approx(1.0 + 2.5)
    assert on_the_loop["efficiency"] == pytest.approx((0.9 + 2.0) / (1.0 + 2.5))
    assert on_the_loop["avgBatteryTemp"] == pytest.approx(25.0)
    assert (on_the_loop["vehicleReadings"], on_the_loop["meterReadings"]) == (2, 2)
    status, in_a_thread = request(f"{path}&minPosition={position}")
    assert status == 200, in_a_thread
    assert in_a_thread.pop("consistency")["reached"] is True
    assert in_a_thread == on_the_loop
    assert request(f"{server}/v1/analytics/performance/{fresh_id('V')}")[0] == 404


def test_live_state_over_http_answers_the_same_on_either_path(server: str) -> None:
    # As the analytics: on the event loop without a position, in a pool thread with one.
    at = int(datetime.now(UTC).timestamp()) // 60 * 60 - 120
    meter_id, vehicle_id = fresh_id("M"), fresh_id("V")
    posted = [
        {"meterId": meter_id, "kwhConsumedAc": 1.5, "voltage": 229.5, "timestamp": at},
        {
            "vehicleId": vehicle_id,
            "soc": 61.5,
            "kwhDeliveredDc": 1.25,
            "batteryTemp": 27.0,
            "timestamp": at,
        },
    ]
    position = post_and_project(server, posted, vehicle_id, meter_id)

    for path, reading in (
        (f"/v1/vehicles/{vehicle_id}", {"soc": 61.5, "kwhDeliveredDc": 1.25, "batteryTemp": 27.0}),
        (f"/v1/meters/{meter_id}", {"kwhConsumedAc": 1.5, "voltage": 229.5}),
    ):
        status, on_the_loop = request(f"{server}{path}")
        assert status == 200, on_the_loop
        last = on_the_loop["lastReading"]
        assert {key: last[key] for key in reading} == reading
        assert datetime.fromisoformat(last["recordedAt"]).timestamp() == at
        assert on_the_loop["ageSeconds"] >= 120
        status, in_a_thread = request(f"{server}{path}?minPosition={position}")
        assert status == 200, in_a_thread
        assert in_a_thread.pop("consistency")["reached"] is True
        # The same answer, but for the reading's age, taken at each answer's own time.
        assert in_a_thread.pop("ageSeconds") >= on_the_loop.pop("ageSeconds")
        assert in_a_thread == on_the_loop
    status, vehicle = request(f"{server}/v1/vehicles/{vehicle_id}")
    assert vehicle["meterId"] == meter_id
    status, meter = request(f"{server}/v1/meters/{meter_id}")
    assert meter["vehicleId"] == vehicle_id
    assert request(f"{server}/v1/vehicles/{fresh_id('V')}")[0] == 404
    assert request(f"{server}/v1/meters/{fresh_id('M')}")[0] == 404


def test_pipelined_answers_come_back_whole_and_in_order_before_the_close(server: str) -> None:
    # The worker gathers each pass's writes into one: answers must still leave in order, and
    # the last one before the connection closes must not be lost.
    host, port = server.removeprefix("http://").split(":")
    ask = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n"
    last = f"GET /v1/nothing-here HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall((ask * 3 + last).encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    heads = [part.split(b"\r\n", 1)[0] for part in answer.split(b"HTTP/1.1 ")[1:]]
    assert heads == [b"200 OK"] * 3 + [b"404 Not Found"]
    assert answer.count(b'{"status":"ok"}') == 3
    assert answer.rstrip().endswith(b"}")  # the 404's problem body, whole


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


def test_without_a_token_the_api_answers_401_and_health_stays_open(server: str) -> None:
    status, body = request(f"{server}/v1/fleet/summary", token=None)
    assert (status, body["type"]) == (401, "/problems/unauthorized")
    status, body = request(
        f"{server}/v1/fleet/summary", token="energy_" + "0" * 12 + "_" + "0" * 64
    )
    assert status == 401 and "unknown credentials" in body["detail"]
    assert request(f"{server}/health", token=None) == (200, {"status": "ok"})


def test_a_token_revoked_through_one_worker_is_refused_by_every_worker_within_moments(
    server: str,
) -> None:
    req = urllib.request.Request(
        f"{server}/v1/tokens",
        data=json.dumps({"identity": fresh_id("dash"), "role": "reader"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {TOKEN['operator']}",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as answer:
        created = json.loads(answer.read())
    token = created["token"]
    for _ in range(20):  # both workers verify it, and may cache it
        assert request(f"{server}/v1/vehicles", token=token)[0] == 200
    revoke = urllib.request.Request(
        f"{server}/v1/tokens/{created['tokenId']}",
        method="DELETE",
        headers={"Authorization": f"Bearer {TOKEN['operator']}"},
    )
    with urllib.request.urlopen(revoke, timeout=10) as answer:
        assert answer.status == 200
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        statuses = {request(f"{server}/v1/vehicles", token=token)[0] for _ in range(10)}
        if statuses == {401}:
            break
        time.sleep(0.01)
    assert statuses == {401}
    assert {request(f"{server}/v1/vehicles", token=token)[0] for _ in range(20)} == {401}


def _sockets(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    return found


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_each_worker_listens_on_a_socket_of_its_own_and_connections_reach_both(
    server: str,
) -> None:
    master, port = MASTER["pid"], MASTER["port"]
    listening, deadline = tcp_sockets(port, LISTEN), time.monotonic() + 15
    while len(listening) < 2 and time.monotonic() < deadline:  # the second worker may boot
        time.sleep(0.2)
        listening = tcp_sockets(port, LISTEN)
    workers = _workers(master)
    assert len(workers) == 2
    assert not _sockets(master) & listening  # the master listens on nothing
    assert [len(_sockets(pid) & listening) for pid in workers] == [1, 1]

    # Sixteen keep-alive connections: the kernel spreads them over both workers (all on
    # one of two, were its choice a coin toss, in 1 of 32,768 runs).
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        for client in clients:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        established = tcp_sockets(port, ESTABLISHED)
        served = [len(_sockets(pid) & established) for pid in workers]
        assert sum(served) == 16 and min(served) > 0, served
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_port_something_already_listens_on_is_refused_before_anything_starts(
    server: str, command: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": DATABASE["url"], "ENERGY_AUTH": "off"}
        done = subprocess.run(
            [sys.executable, "-m", "main", command, "--bind", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "projector running" not in done.stdout and "migrations" not in done.stdout
