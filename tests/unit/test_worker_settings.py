"""How gunicorn runs the API workers: each with a listening socket of its own, and its
garbage collector set once the app is loaded.

Each collector check runs in a fresh interpreter: freezing the collector of the test process
itself would change every test after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import main

ROOT = Path(__file__).resolve().parents[2]


def options(bind: str) -> dict[str, object]:
    return main.gunicorn_options(main.Settings.from_env(), bind=bind, workers=2)


def test_workers_listen_on_sockets_of_their_own_for_a_tcp_port_only() -> None:
    assert options("127.0.0.1:3000")["reuse_port"] is True
    assert options("[::1]:3000")["reuse_port"] is True
    # Each worker would bind a port of its own, or unlink the others' unix socket.
    assert options("127.0.0.1:0")["reuse_port"] is False
    assert options("unix:/tmp/energy.sock")["reuse_port"] is False


# Runs gunicorn's post_worker_init hook as a worker does, then serves "batches": lists of
# objects alive for a moment, as a batch's are while it commits. A reference cycle made
# while serving lives through many of them (and so reaches the oldest generation) before
# it is dropped.
SERVING = """
import gc, json, weakref
import main

frozen_before = gc.get_freeze_count()
options = main.gunicorn_options(main.Settings.from_env(), bind="127.0.0.1:0", workers=1)
options["post_worker_init"](None)
frozen_after = gc.get_freeze_count()

def serve(batches):
    for _ in range(batches):
        batch = [{"items": [n]} for n in range(10_000)]
        del batch

class Node:
    pass

collected = []
first, second = Node(), Node()
first.other, second.other = second, first
weakref.finalize(first, collected.append, "cycle")
serve(300)
old_enough = any(o is first for o in gc.get_objects(generation=2)) and not collected
del first, second
serve(300)
print(json.dumps({
    "thresholds": gc.get_threshold(),
    "frozen_before": frozen_before,
    "frozen_after": frozen_after,
    "old_enough": old_enough,
    "cycle_collected": collected == ["cycle"],
}))
"""


def serving() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SERVING], cwd=ROOT, capture_output=True, text=True, check=True
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_a_worker_freezes_what_it_loaded_and_collects_the_young_generation_less_often() -> None:
    report = serving()
    assert report["thresholds"] == list(main.COLLECTOR_THRESHOLDS)
    assert report["frozen_before"] == 0
    assert isinstance(report["frozen_after"], int) and report["frozen_after"] > 10_000


def test_a_reference_cycle_that_grew_old_while_serving_is_still_collected() -> None:
    report = serving()
    assert report["old_enough"] is True
    assert report["cycle_collected"] is True
