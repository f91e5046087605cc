"""The job engine in seconds: jobs, events, the session pool and the queue against a
real Cog-speaking HTTP server in this process (tests/servers/hostile.py on loopback),
reached through the pool's own ``open_session`` (a model server URL). The engine
against real Cog servers and the local-process runtime is tests/core/test_jobs.py.
"""
from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from runway_addon.core.errors import (Cancelled, ConnectionFailed, RunwayError,
                                      SpecValidationError)
from runway_addon.core.jobs import (Deferred, Done, Failure, Job, JobQueue, JobResult, JobState,
                                    Log, ModelRef, Placement, Progress, SessionPool, Status,
                                    Warning)
from runway_addon.core.jobs.job import resolve_inputs
from runway_addon.core.jobs.pool import options_key
from runway_addon.core.runtimes.base import SessionState
from tests.helpers import wait_until
from tests.servers.hostile import HostileServer, cog_routes, cog_schema

pytestmark = pytest.mark.network


# ---------------------------------------------------------------- a Cog server in-process

class EchoServer(HostileServer):
    """A well-behaved Cog server whose prediction echoes ``text`` upper-cased, with
    logs and metrics. ``hold`` (an Event) keeps predictions waiting until it is set;
    ``answer`` replaces the prediction's answer."""

    def __init__(self):
        super().__init__(cog_routes(cog_schema()))
        self.hold = None
        self.answer = None
        self.arrived = threading.Event()
        self.cancelled = set()
        self.prefix("/predictions/", self._predict)

    def _predict(self, r):
        if r.path.endswith("/cancel"):
            # Like Cog: the held prediction then answers "canceled".
            self.cancelled.add(r.path.split("/")[2])
            if self.hold is not None:
                self.hold.set()
            return r.json({})
        self.arrived.set()
        if self.hold is not None:
            self.hold.wait(30)
        run_id = r.path.split("/")[2]
        if run_id in self.cancelled:
            return r.json({"id": run_id, "status": "canceled", "output": None})
        if self.answer is not None:
            return self.answer(r)
        text = json.loads(r.body)["input"].get("text", "")
        r.json({"status": "succeeded", "output": text.upper(),
                "logs": "loading\n\n  \nsaid it\n", "metrics": {"predict_time": 0.25}})

    def predictions(self) -> list[dict]:
        return [json.loads(x["body"]) for x in self.log
                if x["method"] == "PUT" and not x["path"].endswith("/cancel")]

    def schema_reads(self) -> int:
        """Each session start reads the schema (the same number of times)."""
        return len(self.requests_to("/openapi.json"))


@pytest.fixture
def server():
    s = EchoServer()
    yield s
    if s.hold is not None:
        s.hold.set()
    s.stop()


@pytest.fixture
def engine():
    queue = JobQueue(SessionPool(idle_timeout=60), workers=1)
    yield queue
    queue.shutdown(timeout=10)


def ref(server, name="echo"):
    return ModelRef("url", server.url, name)


def events_of(handle, events):
    return [e for e in events if e.job_id == handle.id]


# ---------------------------------------------------------------- job values

def test_model_refs_name_themselves_and_refuse_unknown_kinds():
    assert ModelRef("folder", "/models/edge-finder").name == "edge-finder"
    assert ModelRef("image", "acme/invert:1").name == "acme/invert:1"
    assert ModelRef("url", "http://h:1", "mine").name == "mine"
    assert ModelRef("folder", "/m/x").key == ("folder", "/m/x")
    with pytest.raises(ValueError) as err:
        ModelRef("ftp", "x")
    assert str(err.value) == "unknown model kind 'ftp' (known: folder, image, url, replicate)"


def test_model_ref_from_a_card(tmp_path):
    folder = tmp_path / "edge-v2"
    card = SimpleNamespace(name="edge", folder=str(folder), source=None)
    assert ModelRef.from_card(card) == ModelRef("folder", str(folder.resolve()), "edge")
    assert ModelRef.from_card(SimpleNamespace(name="edge", folder=str(folder))).name == "edge"
    for kind in ("url", "image", "replicate"):
        card = SimpleNamespace(name="mine", folder="", source=SimpleNamespace(kind=kind,
                                                                             value="v"))
        got = ModelRef.from_card(card)
        assert (got.kind, got.value, got.name) == (kind, "v", "mine")
    card = SimpleNamespace(name="lost", folder="", source=SimpleNamespace(kind="folder",
                                                                         value="v"))
    with pytest.raises(ValueError, match="^model card 'lost' has no folder to run$"):
        ModelRef.from_card(card)


def test_deferred_values_are_resolved_only_by_resolve_inputs():
    calls = []

    def load(a, b):
        calls.append((a, b))
        return a + b

    d = Deferred(load, 2, 3, describe="render")
    assert repr(d) == "Deferred(render)" and repr(Deferred(load)) == "Deferred(load)"
    assert repr(Deferred(functools.partial(load, 1))) == "Deferred(value)"  # no __name__
    assert calls == []
    assert resolve_inputs({"x": d, "y": 7}) == {"x": 5, "y": 7} and calls == [(2, 3)]


def test_a_job_is_labelled_after_its_model_and_has_its_own_id():
    a, b = Job(ModelRef("url", "http://h:1", "echo")), Job(ModelRef("url", "http://h:1"))
    assert a.label == "echo" and b.label == "http://h:1" and a.id != b.id
    assert Job(ModelRef("url", "u", "echo"), label="mine").label == "mine"
    assert a.timeout == 600.0 and a.inputs == {} and a.outputs is None and not a.start_only


# ---------------------------------------------------------------- events

def test_finished_states():
    assert [s for s in JobState if s.finished] == [JobState.DONE, JobState.FAILED,
                                                   JobState.CANCELLED]


@pytest.mark.parametrize("done, total, fraction", [
    (None, 10, None), (3, None, None), (3, 0, None), (0, 4, 0.0), (1, 4, 0.25),
    (4, 4, 1.0), (9, 4, 1.0), (-1, 4, 0.0)])
def test_progress_fraction(done, total, fraction):
    assert Progress("j", "step", done, total).fraction == fraction


def test_a_failure_carries_the_errors_words():
    error = ConnectionFailed("The server went away.", hint="Start it again.", details="EOF")
    f = Failure.of("j1", error)
    assert (f.job_id, f.message, f.hint, f.details, f.error_type) == \
        ("j1", "The server went away.", "Start it again.", "EOF", "ConnectionFailed")
    assert f.kind == error.kind
    assert Failure.of("j1", error, "trace").details == "trace"
    assert Failure.of("j1", RunwayError("x")).error_type == "RunwayError"
    assert Failure.of("j1", RunwayError("x", kind="docker_unavailable")).kind == \
        "docker_unavailable"
    # Anything with a message, hint and details will do; no kind: none.
    plain = SimpleNamespace(message="m", hint="h", details="d")
    assert Failure.of("j1", plain).kind == "" and Failure.of("j1", plain).error_type == \
        "SimpleNamespace"


# ---------------------------------------------------------------- the queue and the pool

def test_a_run_gives_its_outputs_logs_and_metrics_in_order_of_events(engine, server):
    events = []
    [h] = engine.run_blocking([Job(ref(server), {"text": "hello"})], on_event=events.append)
    assert h.state is JobState.DONE and h.finished.is_set() and h.wait(0) is JobState.DONE
    r = h.result
    assert isinstance(r, JobResult) and r.job_id == h.id
    assert r.outputs == {"output": "HELLO"} and r.metrics == {"predict_time": 0.25}
    assert r.logs == "loading\n\n  \nsaid it\n" and r.inputs == {"text": "hello"}
    assert r.session_starts == 1 and r.run_id == h.id and r.seconds >= r.run_seconds > 0
    assert r.seconds <= time.monotonic() - h.submitted
    mine = events_of(h, events)
    states = [e.state for e in mine if isinstance(e, Status)]
    assert states == [JobState.QUEUED, JobState.STARTING, JobState.RUNNING, JobState.DONE]
    messages = [e.message for e in mine if isinstance(e, Status)]
    assert messages == ["echo: queued", "echo: starting the model", "echo: running",
                        "echo: done"]
    assert [e.line for e in mine if isinstance(e, Log)] == ["loading", "said it"]
    # The session's start steps, forwarded to the job that waits for it.
    progress = [e.message for e in mine if isinstance(e, Progress)]
    assert progress == [f"echo: connecting to {server.url}", "echo: cog server; waiting until ready",
                        f"echo: ready at {server.url}"]
    assert isinstance(mine[-1], Done) and mine[-1].state is JobState.DONE
    assert mine[-1].result is r
    assert server.predictions() == [{"id": h.id, "input": {"text": "hello"}}]
    assert engine.active() == [] and engine.get(h.id) is h and engine.get("nope") is None


def test_runs_share_one_warm_session(engine, server):
    [first] = engine.run_blocking([Job(ref(server), {"text": "a"})])
    reads = server.schema_reads()
    assert reads > 0
    handles = [first] + engine.run_blocking([Job(ref(server), {"text": t}) for t in "bc"])
    assert [h.result.outputs["output"] for h in handles] == ["A", "B", "C"]
    assert [h.result.session_starts for h in handles] == [1, 1, 1]
    assert server.schema_reads() == reads and engine.pool.start_count(ref(server)) == 1
    [info] = engine.pool.sessions()
    assert info["model"] == "echo" and info["runtime"] == "LOCAL_PROCESS"
    assert info["state"] == "running" and info["users"] == 0 and info["starts"] == 1
    assert info["url"] == server.url
    entry = engine.pool.find(ref(server))
    assert 0.0 < info["idle_seconds"] <= time.monotonic() - entry.last_used


def test_inputs_are_resolved_on_the_worker_and_outputs_prepared_there(engine, server):
    seen = []
    job = Job(ref(server), {"text": Deferred(lambda: "late")},
              prepare=lambda outputs: {k: v + "!" for k, v in outputs.items()},
              context={"where": "strip"})
    [h] = engine.run_blocking([job], on_event=seen.append)
    assert h.result.outputs == {"output": "LATE!"} and h.result.inputs == {"text": "late"}
    assert h.job.context == {"where": "strip"}


def test_wanted_outputs_are_kept_and_missing_ones_warned(engine, server):
    events = []
    [h] = engine.run_blocking([Job(ref(server), {"text": "x"}, outputs=["output", "mask"])],
                              on_event=events.append)
    assert h.state is JobState.DONE and h.result.outputs == {"output": "X"}
    warnings = [(e.job_id, e.message) for e in events if isinstance(e, Warning)]
    assert warnings == [(h.id, "the model gave no output 'mask'")]
    [h] = engine.run_blocking([Job(ref(server), {"text": "x"}, outputs=[])])
    assert h.result.outputs == {}


def test_a_start_only_job_starts_the_model_and_runs_nothing(engine, server):
    events = []
    [h] = engine.run_blocking([Job(ref(server), start_only=True)], on_event=events.append)
    assert h.state is JobState.DONE and h.result.outputs == {} and h.result.session_starts == 1
    assert h.result.job_id == h.id and 0 < h.result.seconds <= time.monotonic() - h.submitted
    assert server.predictions() == [] and server.schema_reads() > 0
    assert [e.message for e in events if isinstance(e, Status)][-1] == "echo: started"


def test_a_failed_prediction_fails_the_job_with_the_servers_words(engine, server):
    server.answer = lambda r: r.json({"status": "failed", "error": "out of paint"})
    events = []
    [h] = engine.run_blocking([Job(ref(server), {"text": "x"})], on_event=events.append)
    assert h.state is JobState.FAILED and h.result is None
    assert isinstance(h.failure, Failure) and "out of paint" in (h.failure.message +
                                                                 h.failure.details)
    assert [e for e in events if isinstance(e, Failure)] == [h.failure]
    assert [e.message for e in events if isinstance(e, Status)][-1] == "echo: failed"
    assert isinstance(events[-1], Done) and events[-1].state is JobState.FAILED
    # The session is still good: the next run uses it.
    server.answer = None
    [h2] = engine.run_blocking([Job(ref(server), {"text": "y"})])
    assert h2.result.outputs == {"output": "Y"} and h2.result.session_starts == 1


def test_setup_options_for_a_cog_model_are_refused_before_any_run(engine, server):
    [h] = engine.run_blocking([Job(ref(server), {"text": "x"}, options={"weights": "big"})])
    assert h.state is JobState.FAILED and h.failure.error_type == "SpecValidationError"
    assert "weights" in str(h.failure.message + h.failure.details + h.failure.hint)
    assert h.failure.hint == "Pass it as an input of the run instead."
    assert server.predictions() == []
    assert engine.pool.find(ref(server)) is None  # the failed start left nothing behind


def test_bad_values_fail_with_the_field_named_and_nothing_sent(engine, server):
    [h] = engine.run_blocking([Job(ref(server), {"text": 5})])
    assert h.state is JobState.FAILED and h.failure.error_type == "SpecValidationError"
    assert "text" in h.failure.message and server.predictions() == []


def test_a_bug_in_prepare_is_a_failure_with_the_traceback(engine, server):
    def prepare(outputs):
        raise ZeroDivisionError("planted")

    [h] = engine.run_blocking([Job(ref(server), {"text": "x"}, prepare=prepare)])
    assert h.state is JobState.FAILED and h.failure.error_type == "RunwayError"
    assert h.failure.message == "echo: unexpected error: planted"
    assert h.failure.hint == "Please report this with the details."
    assert "ZeroDivisionError" in h.failure.details and "prepare" in h.failure.details


def test_an_unreachable_server_fails_the_start_and_the_next_job_starts_again(engine, server):
    url = server.url
    server.stop()
    [h] = engine.run_blocking([Job(ModelRef("url", url, "gone"), {"text": "x"})])
    assert h.state is JobState.FAILED and h.failure.message
    assert engine.pool.find(ModelRef("url", url)) is None
    [h2] = engine.run_blocking([Job(ModelRef("url", url, "gone"), {"text": "x"})])
    assert h2.state is JobState.FAILED
    assert engine.pool.start_count(ModelRef("url", url)) == 2


def test_a_warm_session_whose_server_went_away_is_started_again_once(engine, server):
    engine.run_blocking([Job(ref(server), {"text": "a"})])
    reads = server.schema_reads()
    calls = []

    def drop_first(r):
        calls.append(1)
        if len(calls) == 1:
            return r.close()  # the old server's connection dies mid-run
        text = json.loads(r.body)["input"]["text"]
        r.json({"status": "succeeded", "output": text * 2})

    server.answer = drop_first
    events = []
    [h2] = engine.run_blocking([Job(ref(server), {"text": "b"})], on_event=events.append)
    assert h2.state is JobState.DONE and h2.result.outputs == {"output": "bb"}
    assert h2.result.session_starts == 2 and server.schema_reads() == 2 * reads
    assert len(calls) == 2
    assert [(e.job_id, e.message) for e in events if isinstance(e, Warning)] == [
        (h2.id, "echo: the model's server had stopped; starting it again")]


def test_a_fresh_session_that_cannot_be_reached_mid_run_fails(engine, server):
    server.answer = lambda r: r.close()
    [h] = engine.run_blocking([Job(ref(server), {"text": "a"})])
    assert h.state is JobState.FAILED and h.failure.error_type == "ConnectionFailed"
    assert engine.pool.start_count(ref(server)) == 1
    assert engine.pool.find(ref(server)) is None  # broken: not reused


def test_a_queued_job_cancelled_never_runs(engine, server):
    server.hold = threading.Event()
    first = engine.submit(Job(ref(server), {"text": "first"}))
    assert server.arrived.wait(30)  # the only worker is busy with the first job
    second = engine.submit(Job(ref(server), {"text": "second"}, label="later"))
    assert engine.cancel(second.id) and not engine.cancel("no-such-job")
    assert {h.id for h in engine.active()} == {first.id, second.id}
    server.hold.set()
    events = []
    engine.drain_until([first, second], events.append)
    assert first.state is JobState.DONE and second.state is JobState.CANCELLED
    assert [p["input"]["text"] for p in server.predictions()] == ["first"]
    assert [e.message for e in events_of(second, events) if isinstance(e, Status)] == [
        "later: queued", "later: cancelled"]
    second.cancel()  # a finished job: nothing happens
    assert second.state is JobState.CANCELLED


def test_a_running_job_cancelled_ends_cancelled(engine, server):
    server.hold = threading.Event()
    h = engine.submit(Job(ref(server), {"text": "slow"}))
    assert server.arrived.wait(30)
    assert h.state is JobState.RUNNING and not h.finished.is_set()
    [info] = engine.pool.sessions()
    assert info["users"] == 1 and info["idle_seconds"] == 0.0
    h.cancel()
    events = []
    engine.drain_until([h], events.append)
    server.hold.set()
    assert h.state is JobState.CANCELLED and h.result is None and h.failure is None
    assert events[-1].state is JobState.CANCELLED
    assert [e.message for e in events if isinstance(e, Status)][-1] == "echo: cancelled"
    assert server.requests_to(f"/predictions/{h.id}/cancel", "POST")


def test_run_blocking_past_its_timeout_cancels_what_is_left(engine, server):
    server.hold = threading.Event()
    [h] = engine.run_blocking([Job(ref(server), {"text": "slow"})], timeout=0.2)
    server.hold.set()
    assert h.state is JobState.CANCELLED


def test_scratch_folders_are_removed_however_the_job_ends(engine, server, tmp_path):
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    for folder in (ok, bad):
        folder.mkdir()
        (folder / "render.png").write_bytes(b"x")
    engine.run_blocking([Job(ref(server), {"text": "a"}, scratch=[str(ok)]),
                         Job(ref(server), {"text": 1}, scratch=[str(bad)])])
    assert not ok.exists() and not bad.exists()


def test_poll_never_blocks_and_returns_each_event_once(engine, server):
    h = engine.submit(Job(ref(server), {"text": "p"}))
    h.wait(30)
    first = engine.poll()
    assert [type(e) for e in first][0] is Status and isinstance(first[-1], Done)
    assert engine.poll() == []


def test_idle_sessions_are_stopped_and_named(server):
    pool = SessionPool(idle_timeout=60)
    queue = JobQueue(pool, workers=2)
    try:
        queue.run_blocking([Job(ref(server), {"text": "a"})])
        entry = pool.find(ref(server))
        assert entry is not None and entry.state is SessionState.RUNNING
        assert pool.stop_idle(now=entry.last_used + 59) == []
        assert pool.stop_idle(now=entry.last_used + 60) == ["echo"]
        pool.join(10)
        assert pool.find(ref(server)) is None and entry.state is SessionState.STOPPED
        assert pool.sessions() == []
    finally:
        queue.shutdown(timeout=10)


def test_no_idle_stop_when_the_idle_time_is_zero(server):
    pool = SessionPool(idle_timeout=0)
    queue = JobQueue(pool)
    try:
        queue.run_blocking([Job(ref(server), {"text": "a"})])
        assert pool.stop_idle(now=1e12) == [] and pool.find(ref(server)) is not None
    finally:
        queue.shutdown(timeout=10)


def test_stop_and_find_by_model_and_placement(engine, server):
    here, there = Placement(), Placement(runtime="LOCAL_PROCESS", replica=1)
    engine.run_blocking([Job(ref(server), {"text": "a"}, placement=here),
                         Job(ref(server), {"text": "b"}, placement=there)])
    pool = engine.pool
    assert pool.find(ref(server), here).placement == here
    assert pool.find(ref(server), there).placement == there
    assert pool.start_count(ref(server)) == 2 and pool.start_count(ref(server), there) == 1
    assert pool.stop(ref(server), there) and pool.find(ref(server), there) is None
    assert pool.find(ref(server), here) is not None
    assert not pool.stop(ModelRef("url", "http://127.0.0.1:9", "other"))
    pool.stop_all(wait=True, timeout=10)
    assert pool.sessions() == [] and pool.find(ref(server)) is None


def test_changed_options_retire_the_session(server):
    """A Runway-style option change starts a new session; here Cog refuses options,
    so the retired session is stopped and the new start fails."""
    pool = SessionPool()
    queue = JobQueue(pool)
    try:
        [h1] = queue.run_blocking([Job(ref(server), {"text": "a"})])
        old = pool.find(ref(server))
        [h2] = queue.run_blocking([Job(ref(server), {"text": "a"}, options={"k": 1})])
        pool.join(10)
        assert h1.state is JobState.DONE and h2.state is JobState.FAILED
        assert old.retired and old.state is SessionState.STOPPED
        assert pool.start_count(ref(server)) == 2
    finally:
        queue.shutdown(timeout=10)


def test_options_key_is_order_free():
    assert options_key({"b": 1, "a": Path("/x")}) == options_key({"a": Path("/x"), "b": 1})
    assert options_key(None) == options_key({}) == "{}"
    assert options_key({"a": 1}) != options_key({"a": 2})


def test_acquire_cancelled_before_the_start_raises_cancelled(server):
    pool = SessionPool()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled) as err:
        pool.acquire(Job(ref(server)), cancel)
    assert err.value.message == "Cancelled while the model was starting."
    assert pool.find(ref(server)) is None and server.schema_reads() == 0


def test_shutdown_cancels_what_runs_and_stops_every_session(server):
    pool = SessionPool()
    queue = JobQueue(pool, workers=2)
    server.hold = threading.Event()
    running = queue.submit(Job(ref(server), {"text": "slow"}))
    assert server.arrived.wait(30)
    entry = pool.find(ref(server))
    queue.shutdown(timeout=10)
    assert running.finished.is_set() and running.state is JobState.CANCELLED
    assert queue.active() == [] and pool.sessions() == []
    assert entry.state is SessionState.STOPPED and entry.client is None
    assert server.requests_to(f"/predictions/{running.id}/cancel", "POST")


def test_draining_without_a_listener_still_consumes_the_events(engine, server):
    h = engine.submit(Job(ref(server), {"text": "q"}))
    engine.drain_until([h])
    assert h.state is JobState.DONE and engine.poll() == []


def test_the_jobs_command_is_the_one_run(engine, server):
    [h] = engine.run_blocking([Job(ref(server), {"text": "x"}, command="transmogrify")])
    assert h.state is JobState.FAILED and "transmogrify" in h.failure.message
    assert server.predictions() == []


def test_a_cog_model_refuses_setup_options_by_name(server):
    pool = SessionPool()
    with pytest.raises(SpecValidationError) as err:
        pool.acquire(Job(ref(server), options={"weights": "big", "fp16": True}))
    assert [(i.field, i.value, i.rule, i.message) for i in err.value.issues] == [
        ("weights", "big", "unknown", "the model has no setup option of this name"),
        ("fp16", True, "unknown", "the model has no setup option of this name")]
    assert err.value.hint == "Pass it as an input of the run instead."
    assert pool.find(ref(server)) is None and pool.start_count(ref(server)) == 1


def test_cancelling_the_only_job_waiting_for_a_start_aborts_the_start(engine, server):
    setting_up = {"status": "STARTING", "setup": {"status": "processing", "logs": ""}}
    server.route("/health-check", lambda r: r.json(setting_up), method="GET")
    h = engine.submit(Job(ref(server), {"text": "x"}))
    assert wait_until(lambda: server.requests_to("/health-check"), 30)
    assert h.state is JobState.STARTING
    entry = engine.pool.find(ref(server))
    assert entry is not None and list(entry.listeners) == [h.id]
    engine.pool.abort_start("another-job")  # not waiting for it: nothing happens
    assert not entry.ready.is_set()
    h.cancel()
    engine.drain_until([h])
    assert h.state is JobState.CANCELLED and server.predictions() == []
    assert engine.pool.find(ref(server)) is None and entry.state is SessionState.STOPPED
