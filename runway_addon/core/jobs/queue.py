"""The job queue: worker threads run jobs on warm sessions; drivers read events.

- ``submit(job)`` returns a JobHandle at once.
- ``poll()`` returns the events that arrived since the last call and never
  blocks: a UI timer calls it.
- ``run_blocking(jobs)`` submits and drains the same queue until the jobs are
  finished: background mode and scripts, where timers never fire.
- ``handle.cancel()`` works queued (never runs), starting (the start is aborted
  when no other job waits for it) and running (Cog cancels on the server).

Workers are started on demand and end when nothing is left to do, so an idle
engine holds no thread that could keep an interpreter from exiting.
"""
from __future__ import annotations

import collections
import queue as _queue
import shutil
import threading
import time
import traceback
from typing import Callable, Iterable, Optional

from ..errors import Cancelled, ConnectionFailed, Kind, RunwayError, ServerError
from ..runtimes.base import RuntimeFailed, SessionState
from .events import Done, Failure, JobEvent, JobState, Log, Status, Warning
from .job import Job, JobResult, resolve_inputs
from .pool import SessionPool


class JobHandle:
    """A submitted job: its state, and its result once DONE."""

    def __init__(self, job: Job, engine: "JobQueue"):
        self.job = job
        self.state = JobState.QUEUED
        self.result: Optional[JobResult] = None
        self.failure: Optional[Failure] = None
        self.submitted = time.monotonic()
        self.cancel_event = threading.Event()
        self.finished = threading.Event()
        self._engine = engine

    @property
    def id(self) -> str:
        return self.job.id

    def cancel(self) -> None:
        """Ask the job to stop; its Done event says CANCELLED (or DONE if it won)."""
        if self.finished.is_set():
            return
        self.cancel_event.set()
        self._engine.pool.abort_start(self.job.id)

    def wait(self, timeout: Optional[float] = None) -> JobState:
        self.finished.wait(timeout)
        return self.state

    def __repr__(self) -> str:
        return f"<JobHandle {self.job.label} {self.state.value}>"


class JobQueue:
    def __init__(self, pool: Optional[SessionPool] = None, workers: int = 2):
        self.pool = pool or SessionPool()
        self.max_workers = max(1, workers)
        self._lock = threading.Lock()
        self._pending: "collections.deque[JobHandle]" = collections.deque()
        self._handles: dict[str, JobHandle] = {}
        self._events: "_queue.Queue[JobEvent]" = _queue.Queue()
        self._workers: set[threading.Thread] = set()

    # ------------------------------------------------------------ submit / cancel

    def submit(self, job: Job) -> JobHandle:
        handle = JobHandle(job, self)
        with self._lock:
            self._handles[job.id] = handle
            self._pending.append(handle)
            self._emit(Status(job.id, JobState.QUEUED, f"{job.label}: queued"))
            if len(self._workers) < self.max_workers:
                worker = threading.Thread(target=self._work, name="runway-job-worker")
                self._workers.add(worker)
                worker.start()
        return handle

    def get(self, job_id: str) -> Optional[JobHandle]:
        return self._handles.get(job_id)

    def active(self) -> list[JobHandle]:
        with self._lock:
            return [h for h in self._handles.values() if not h.finished.is_set()]

    def cancel(self, job_id: str) -> bool:
        handle = self._handles.get(job_id)
        if handle is None:
            return False
        handle.cancel()
        return True

    def cancel_all(self) -> None:
        for handle in self.active():
            handle.cancel()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every job and stop every session (at unregister and exit)."""
        self.cancel_all()
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        self.pool.stop_all(wait=True, timeout=max(1.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ drivers

    def poll(self) -> list[JobEvent]:
        """The events since the last call, oldest first. Never blocks."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except _queue.Empty:
                break
        self.pool.stop_idle()
        return out

    def run_blocking(self, jobs: Iterable[Job], on_event: Optional[Callable[[JobEvent], None]]
                     = None, timeout: Optional[float] = None) -> list[JobHandle]:
        """Submit ``jobs`` and drain events (to ``on_event``) until all are finished.
        Past ``timeout`` seconds the unfinished ones are cancelled (and drained)."""
        handles = [self.submit(j) for j in jobs]
        self.drain_until(handles, on_event, timeout)
        return handles

    def drain_until(self, handles: list[JobHandle], on_event=None,
                    timeout: Optional[float] = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        cancelled = False
        while True:
            for event in self._next_events(0.05):
                if on_event is not None:
                    on_event(event)
            if all(h.finished.is_set() for h in handles) and self._events.empty():
                return
            if deadline is not None and not cancelled and time.monotonic() > deadline:
                cancelled = True
                for h in handles:
                    h.cancel()

    def _next_events(self, wait: float) -> list[JobEvent]:
        try:
            first = self._events.get(timeout=wait)
        except _queue.Empty:
            return self.poll()
        return [first] + self.poll()

    # ------------------------------------------------------------ workers

    def _emit(self, event: JobEvent) -> None:
        self._events.put(event)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._workers.discard(threading.current_thread())
                    return
                handle = self._pending.popleft()
            self._execute(handle)

    def _finish(self, handle: JobHandle, state: JobState, message: str = "") -> None:
        handle.state = state
        job = handle.job
        for folder in job.scratch:
            shutil.rmtree(folder, ignore_errors=True)
        if message:
            self._emit(Status(job.id, state, message))
        self._emit(Done(job.id, state, handle.result))
        handle.finished.set()

    def _fail(self, handle: JobHandle, error: RunwayError, details: str = "") -> None:
        failure = Failure.of(handle.id, error, details)
        handle.failure = failure
        self._emit(failure)
        self._finish(handle, JobState.FAILED, f"{handle.job.label}: failed")

    @staticmethod
    def _explain(entry, error: RunwayError, wait: float = 2.0) -> RunwayError:
        """A run that failed because its container died (killed for memory, exited):
        the session's reason, which says what to do, instead of the server's last words
        ("Worker crashed", a reset connection). The engine reports an OOM kill a moment
        after the server answers, so a crash-like failure waits up to ``wait`` seconds
        for the session's verdict; other failures are returned as they are."""
        session = getattr(entry, "session", None)
        diagnose = getattr(session, "diagnose", None)
        crash = isinstance(error, ConnectionFailed) or (
            isinstance(error, ServerError) and "crash" in error.message.lower())
        if diagnose is None or not crash:
            return error
        deadline = time.monotonic() + wait
        while session.state is SessionState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        why = diagnose()
        if not why:
            return error
        oom = bool(getattr(session, "oom_killed", False))
        return RuntimeFailed(
            f"The run failed: {why}",
            hint=("Give the model's container more memory (the container memory limit), "
                  "or use smaller inputs, then run again.") if oom else
                 "See the details for the server's answer; run again to restart the model.",
            details=f"{error.message}\n{error.details}".strip(),
            kind=Kind.CONTAINER_MEMORY if oom else error.kind)

    def _execute(self, handle: JobHandle) -> None:
        job, cancel = handle.job, handle.cancel_event
        if cancel.is_set():
            return self._finish(handle, JobState.CANCELLED, f"{job.label}: cancelled")
        entry, broken = None, False
        try:
            handle.state = JobState.STARTING
            self._emit(Status(job.id, JobState.STARTING, f"{job.label}: starting the model"))
            inputs = None
            for attempt in (1, 2):
                entry = self.pool.acquire(job, cancel, self._emit)
                if cancel.is_set():
                    raise Cancelled("Cancelled.")
                if job.start_only:
                    handle.result = JobResult(job.id, {}, session_starts=entry.starts,
                                              seconds=time.monotonic() - handle.submitted)
                    return self._finish(handle, JobState.DONE, f"{job.label}: started")
                if inputs is None:  # while an earlier run may still hold the model
                    inputs = resolve_inputs(job.inputs)
                while not entry.busy.acquire(timeout=0.05):
                    if cancel.is_set():
                        raise Cancelled("Cancelled while waiting for the model.")
                handle.state = JobState.RUNNING
                self._emit(Status(job.id, JobState.RUNNING, f"{job.label}: running"))
                t0 = time.monotonic()
                try:
                    result = entry.client.run(inputs, job.command, run_id=job.id,
                                              cancel_event=cancel)
                    break
                except ConnectionFailed:
                    # A warm session whose server died since its last run: start a
                    # new one, once. A fresh session that cannot be reached is an error.
                    if attempt == 2 or entry.starts_by_this_job(job.id) or cancel.is_set():
                        raise
                    self._emit(Warning(job.id, f"{job.label}: the model's server had "
                                               "stopped; starting it again"))
                    self.pool.release(entry, broken=True)
                    entry = None
                finally:
                    if entry is not None:
                        entry.busy.release()
            run_seconds = time.monotonic() - t0
            outputs = result.outputs
            if job.outputs is not None:
                for name in job.outputs:
                    if name not in outputs:
                        self._emit(Warning(job.id, f"the model gave no output {name!r}"))
                outputs = {k: v for k, v in outputs.items() if k in job.outputs}
            if job.prepare is not None:
                outputs = job.prepare(outputs)
            for line in (result.logs or "").splitlines():
                if line.strip():
                    self._emit(Log(job.id, line))
            handle.result = JobResult(job.id, outputs, result.logs, dict(result.metrics),
                                      result.run_id, entry.starts,
                                      time.monotonic() - handle.submitted, run_seconds,
                                      inputs)
            self._finish(handle, JobState.DONE, f"{job.label}: done")
        except Cancelled:
            self._finish(handle, JobState.CANCELLED, f"{job.label}: cancelled")
        except RunwayError as e:
            broken = isinstance(e, ConnectionFailed)
            if cancel.is_set():
                self._finish(handle, JobState.CANCELLED, f"{job.label}: cancelled")
            else:
                self._fail(handle, self._explain(entry, e))
        except Exception as e:  # noqa: BLE001 (a worker must outlive any bug; shown, not lost)
            self._fail(handle, RunwayError(f"{job.label}: unexpected error: {e}",
                                           hint="Please report this with the details."),
                       traceback.format_exc())
        finally:
            if entry is not None:
                self.pool.release(entry, broken)
