"""The job engine, bpy-free: what to run (job), what happens (events), warm model
sessions (pool) and the worker queue with its two drivers (queue).

One engine serves the Run button, render post-processing and batch work:
``JobQueue.poll()`` is the non-blocking driver a UI timer calls, and
``JobQueue.run_blocking()`` the blocking one for background mode and scripts.
"""
from .events import (Done, Failure, JobEvent, JobState, Log, Progress, Status,  # noqa: F401
                     Warning)
from .job import Deferred, Job, JobResult, ModelRef  # noqa: F401
from .placement import Placement, open_session  # noqa: F401
from .pool import SessionPool  # noqa: F401
from .queue import JobHandle, JobQueue  # noqa: F401
