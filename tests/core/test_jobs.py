"""The job engine against real Cog servers on the local-process runtime, without
Blender: many jobs, concurrent submits, cancel at every stage, a server dying
mid-run, warm reuse shown by the session's start count, and the blocking driver.

Models: tests/model_servers/process/echo (text, optional slow setup) and identity
(an image sent back unchanged, optional delay or crash).
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from runway_addon.core import codecs
from runway_addon.core.jobs import (Done, Failure, Job, JobQueue, JobState, ModelRef,
                                    Placement, SessionPool, Status, open_session)
from runway_addon.core.runtimes.base import SessionState
from runway_addon.core.runtimes.process import (ProcessSession, default_cache_dir,
                                                process_start_time)
from tests.helpers import ROOT, in_threads, wait_until

pytestmark = [pytest.mark.network, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

MODELS = ROOT / "tests" / "model_servers" / "process"
ECHO = ModelRef("folder", str(MODELS / "echo"))
IDENTITY = ModelRef("folder", str(MODELS / "identity"))
SHARED_ENVS = default_cache_dir() / "model-envs"  # shared with the shelf tests


@pytest.fixture
def placement(tmp_path):
    return Placement(env_root=str(SHARED_ENVS), runtime_dir=str(tmp_path / "sessions"))


@pytest.fixture
def engine(placement):
    queue = JobQueue(SessionPool(placement=placement), workers=2)
    yield queue
    queue.shutdown(timeout=30)


def picture(h=48, w=64) -> np.ndarray:
    """RGBA with a distinct value per row and column: any flip or colour change shows."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 3, y * 5, (x + y) % 256, 255 - y]).astype(np.uint8)


def events_of(queue, handles, timeout=120):
    seen = []
    queue.drain_until(handles, seen.append, timeout)
    return seen


def states(events, job_id):
    return [e.state for e in events if isinstance(e, Status) and e.job_id == job_id]


def test_many_jobs_share_one_warm_session(engine):
    handles = [engine.submit(Job(ECHO, {"text": f"t{i}", "repeat": 2})) for i in range(6)]
    events = events_of(engine, handles)
    assert [h.state for h in handles] == [JobState.DONE] * 6
    assert [h.result.outputs["output"] for h in handles] == [f"t{i}t{i}" for i in range(6)]
    # One start served all six runs: the model was started once.
    assert engine.pool.start_count(ECHO) == 1
    assert {h.result.session_starts for h in handles} == {1}
    for h in handles:
        assert states(events, h.id)[:1] == [JobState.QUEUED]
        assert states(events, h.id)[-1] is JobState.DONE
        assert [e for e in events if isinstance(e, Done) and e.job_id == h.id]
    # The blocking driver runs later jobs on the same warm session.
    [again] = engine.run_blocking([Job(ECHO, {"text": "warm"})], timeout=60)
    assert again.result.outputs["output"] == "warm"
    assert engine.pool.start_count(ECHO) == 1
    [info] = engine.pool.sessions()
    assert info["state"] == "running" and info["users"] == 0


def test_concurrent_submits_from_many_threads(engine):
    handles, lock = [], threading.Lock()

    def submit_some(k):
        for i in range(3):
            h = engine.submit(Job(ECHO, {"text": f"{k}.{i}"}))
            with lock:
                handles.append(h)

    in_threads(submit_some, 4)
    events_of(engine, handles)
    assert sorted(h.result.outputs["output"] for h in handles) == \
        sorted(f"{k}.{i}" for k in range(4) for i in range(3))
    assert engine.pool.start_count(ECHO) == 1


def test_identity_image_comes_back_pixel_exact(engine):
    sent = picture()
    [h] = engine.run_blocking([Job(IDENTITY, {"image": sent})], timeout=120)
    assert h.state is JobState.DONE, h.failure
    out = h.result.outputs["output"]
    back = codecs.decode_image_bytes(out.read_bytes())
    assert back.shape == sent.shape and back.dtype == np.uint8
    np.testing.assert_array_equal(back, sent)
    assert h.result.metrics.get("predict_time", 0) > 0


def test_cancel_a_queued_job_it_never_runs(placement):
    queue = JobQueue(SessionPool(placement=placement), workers=1)
    try:
        long = queue.submit(Job(IDENTITY, {"image": picture(), "delay": 3.0}))
        waiting = queue.submit(Job(ECHO, {"text": "never"}))
        waiting.cancel()
        events = events_of(queue, [long, waiting])
        assert waiting.state is JobState.CANCELLED
        assert JobState.RUNNING not in states(events, waiting.id)
        assert queue.pool.start_count(ECHO) == 0  # its model was never even started
        assert long.state is JobState.DONE
    finally:
        queue.shutdown()


def test_cancel_while_the_model_starts_aborts_the_start(tmp_path, placement):
    sessions = []

    def slow_setup(model, where, on_event=None):
        s = ProcessSession(model.value, env_root=where.env_root, runtime_dir=where.runtime_dir,
                           env={"RUNWAY_TEST_SETUP_SECONDS": "60"}, on_event=on_event)
        sessions.append(s)
        return s

    queue = JobQueue(SessionPool(placement=placement, session_factory=slow_setup))
    try:
        h = queue.submit(Job(ECHO, {"text": "x"}))
        assert wait_until(lambda: sessions and sessions[0].state is SessionState.STARTING
                          and sessions[0].pid, 60)
        pid = sessions[0].pid
        h.cancel()
        events = events_of(queue, [h], timeout=30)
        assert h.state is JobState.CANCELLED, [e for e in events if isinstance(e, Failure)]
        assert not [e for e in events if isinstance(e, Failure)]  # a cancel is not an error
        assert sessions[0].state is SessionState.STOPPED
        assert wait_until(lambda: process_start_time(pid) is None, 10)  # the server is gone
        assert queue.pool.sessions() == []
    finally:
        queue.shutdown()


def test_cancel_a_running_job_keeps_the_session_warm(engine):
    h = engine.submit(Job(IDENTITY, {"image": picture(), "delay": 30.0}))
    assert wait_until(lambda: h.state is JobState.RUNNING, 120)
    # The prediction is on the server: the model printed its first step.
    session = engine.pool.find(IDENTITY).session
    assert wait_until(lambda: "working 0/" in session.logs(), 30, 0.05)
    h.cancel()
    events_of(engine, [h], timeout=30)
    # Cancelled, not waited out: the 30 s run never finished.
    assert h.state is JobState.CANCELLED and "sent back" not in session.logs()
    # Cog cancelled it on the server: the same session runs the next job at once.
    [after] = engine.run_blocking([Job(IDENTITY, {"image": picture()})], timeout=60)
    assert after.state is JobState.DONE, after.failure
    assert engine.pool.start_count(IDENTITY) == 1


def test_a_server_dying_mid_run_fails_that_job_and_the_next_starts_it_again(engine):
    [dead] = engine.run_blocking([Job(IDENTITY, {"image": picture(), "crash": True})],
                                 timeout=120)
    assert dead.state is JobState.FAILED
    assert dead.failure.message and dead.failure.error_type  # typed, with words for a person
    assert engine.pool.start_count(IDENTITY) == 1
    [next_one] = engine.run_blocking([Job(IDENTITY, {"image": picture()})], timeout=120)
    assert next_one.state is JobState.DONE, next_one.failure
    assert engine.pool.start_count(IDENTITY) == 2  # a new session replaced the dead one


def test_bad_values_fail_before_sending_with_the_field_named(engine):
    [h] = engine.run_blocking([Job(ECHO, {"text": "x", "repeat": 99})], timeout=60)
    assert h.state is JobState.FAILED
    assert "repeat" in h.failure.message and h.failure.error_type == "SpecValidationError"
    # Cog models have no setup options: one given is refused, naming it.
    [o] = engine.run_blocking([Job(ECHO, {"text": "x"}, options={"checkpoint": "a"})], timeout=60)
    assert o.state is JobState.FAILED and "checkpoint" in o.failure.message


def test_idle_sessions_stop_after_the_idle_time(placement):
    pool = SessionPool(placement=placement, idle_timeout=0.5)
    queue = JobQueue(pool)
    try:
        [h] = queue.run_blocking([Job(ECHO, {"text": "x"})], timeout=60)
        session = pool.find(ECHO).session
        assert session.state is SessionState.RUNNING
        assert pool.stop_idle(time.monotonic() + 0.1) == []  # not idle long enough yet
        assert wait_until(lambda: (queue.poll(), not pool.sessions())[1], 10)
        pool.join(10)
        assert session.state is SessionState.STOPPED
    finally:
        queue.shutdown()


def test_placement_decides_the_runtime(tmp_path):
    folder = ModelRef("folder", str(MODELS / "echo"))
    assert type(open_session(folder, Placement())).__name__ == "ProcessSession"
    docker_session = open_session(folder, Placement(runtime="DOCKER_CPU", mem_limit=2 << 30))
    assert type(docker_session).__name__ == "DockerSession"
    assert docker_session.image.endswith("/echo:latest")
    url = open_session(ModelRef("url", "http://127.0.0.1:9"), Placement(token="secret-1234"))
    assert type(url).__name__ == "RemoteSession"
    assert "secret-1234" not in repr(Placement(token="secret-1234"))
    with pytest.raises(ValueError):
        Placement(runtime="SOMEWHERE")


def test_runs_on_one_session_take_turns_in_order(engine):
    """Two workers, one warm session: the second run waits for the first instead of
    racing it to the server (a local Cog server predicts one at a time), and only
    says 'running' once it has the model."""
    first = engine.submit(Job(IDENTITY, {"image": picture(), "delay": 1.5}))
    assert wait_until(lambda: first.state is JobState.RUNNING, 120)
    second = engine.submit(Job(IDENTITY, {"image": picture()}))
    events = events_of(engine, [first, second], timeout=120)
    assert first.state is second.state is JobState.DONE
    order = [(e.job_id, e.state) for e in events
             if isinstance(e, (Status, Done)) and e.state in (JobState.RUNNING, JobState.DONE)]
    assert order.index((first.id, JobState.DONE)) < order.index((second.id, JobState.RUNNING))
    assert engine.pool.start_count(IDENTITY) == 1
