"""A model server in a Docker container: local CPU, local NVIDIA GPU, or a remote engine.

    session = DockerSession("invert", "runway-for-blender/invert:latest",
                            mem_limit=4 << 30, on_event=print)
    session.start()            # PREPARING (image, pull) -> STARTING -> RUNNING
    with session.client() as model:
        model.run({"image": pixels})
    session.stop()             # removes the container, frees the port

Safety: the container's port 5000 is published on 127.0.0.1 only (Docker picks
a free host port; on a remote engine, the address the user chose, see
``publish_address``), never privileged, no host network, every capability
dropped, ``no-new-privileges``, a memory limit without swap (so running out of
memory is a real, reported OOM kill), a pid limit. Every container carries our
labels, so ``cleanup_orphans`` removes what a crashed Blender left behind and
nothing else.

Files: with a local engine a per-session folder is mounted read-write at the
same path inside the container, so bare paths work on both sides. A remote
engine cannot see our disk: ``shared_dir`` is None and files travel as data URIs.

Uses the Docker SDK for Python (the ``docker`` package), never the CLI.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import queue
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from ..errors import Kind
from ..protocols.replicate import is_loopback  # the one loopback rule, also remote.py's
from .base import ModelSession, RuntimeFailed, SessionEvent, SessionState, _Stopped
from .processes import owner_alive, process_start_time
from .pywin32_paths import ensure_pywin32_paths

CONTAINER_PORT = 5000
LABEL_PREFIX = "org.runwayforblender."
OWNER_LABEL = LABEL_PREFIX + "owner"
SESSION_LABEL = LABEL_PREFIX + "session"
MODEL_LABEL = LABEL_PREFIX + "model"
PID_LABEL = LABEL_PREFIX + "pid"
HOST_LABEL = LABEL_PREFIX + "host"
STARTED_LABEL = LABEL_PREFIX + "pid-started"  # tells our pid from a reused one
UNAVAILABLE = "Docker unavailable"  # the seed's plain status line
PIDS_LIMIT = 4096  # generous for model servers and their data loaders, bounds a fork bomb


IMAGE_REPOSITORY = "runway-for-blender"


def image_tag(model_dir) -> str:
    """The image a model folder runs as (what ``build.py models docker`` builds)."""
    return f"{IMAGE_REPOSITORY}/{os.path.basename(os.path.normpath(str(model_dir))).lower()}:latest"


def default_owner() -> str:
    """A stable id for this user on this machine (the owner label's value)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some sandboxes
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return hashlib.sha256(f"{user}@{socket.gethostname()}".encode()).hexdigest()[:16]


def unavailable_hint() -> str:
    """What to do when the engine cannot be reached, in this platform's words."""
    if sys.platform.startswith("linux"):
        return ("Start the Docker service (sudo systemctl start docker) and make sure your "
                "user may use it (sudo usermod -aG docker $USER, then log in again).")
    if sys.platform == "darwin":
        return "Start Docker Desktop and wait until it says it is running."
    if sys.platform.startswith("win"):
        return "Start Docker Desktop (Linux containers) and wait until it says it is running."
    return "Start the Docker engine."


def _is_remote(docker_host: Optional[str]) -> bool:
    return bool(docker_host) and not docker_host.startswith(("unix://", "npipe://"))


def _connect_host(docker_host: Optional[str]) -> str:
    """The address at which the engine's published ports are reached from here."""
    if not _is_remote(docker_host):
        return "127.0.0.1"
    return urlparse(docker_host).hostname or "127.0.0.1"


def publish_address(docker_host: Optional[str], publish_ip: Optional[str] = None
                    ) -> tuple[str, str]:
    """(the engine's address that publishes the model port, the host we reach it at).

    A model server has no login, so its port is on loopback unless the user chose
    an address of a remote engine (``publish_ip``: "0.0.0.0" for all of them, or
    one, e.g. a VPN's): anyone who reaches that address can use the model. A
    local engine always publishes on loopback.
    """
    host = _connect_host(docker_host)
    if not _is_remote(docker_host):
        return "127.0.0.1", host
    ip = (publish_ip or "").strip() or "127.0.0.1"
    if is_loopback(ip):
        if not is_loopback(host):
            raise RuntimeFailed(
                f"The model's port would be published on the loopback address of {host} "
                "only, which this computer cannot reach.",
                hint="Choose which address of the remote Docker host publishes model ports "
                     "(anyone who can reach it can use the model), or run the model on this "
                     "computer.")
        return "127.0.0.1", host
    return ip, host if ip in ("0.0.0.0", "::") else ip


def connect_engine(docker_host: Optional[str] = None, *, tls: Any = None,
                   timeout: float = 60.0):
    """A ``docker.DockerClient`` that has answered a ping, or RuntimeFailed.

    ``docker_host``: None (DOCKER_HOST or the platform's default socket),
    ``unix://...``, ``tcp://host:port`` (``tls``: a ``docker.tls.TLSConfig`` or
    True) or ``ssh://user@host`` (through the ssh command).
    """
    # Windows: docker-py's named pipe needs pywin32, whose .pth Blender ignores.
    ensure_pywin32_paths()
    try:
        import docker
    except ImportError as exc:
        raise RuntimeFailed(f"{UNAVAILABLE}: the Docker SDK for Python is not installed.",
                            hint="Reinstall the add-on; it ships the 'docker' package.") from exc
    where = docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, tls=tls or False,
                                         timeout=int(timeout),
                                         use_ssh_client=docker_host.startswith("ssh://"))
        else:
            client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # DockerException, requests errors, bad URLs: all mean "not there"
        raise RuntimeFailed(f"{UNAVAILABLE}: cannot reach the Docker engine at {where}.",
                            hint=unavailable_hint(), details=str(exc)) from exc
    return client


def check_gpu_support(client, *, local: bool = True) -> None:
    """RuntimeFailed unless the engine can give containers NVIDIA GPUs."""
    if local and not sys.platform.startswith("linux"):
        raise RuntimeFailed(
            "GPU runs on this computer need Linux with the NVIDIA Container Toolkit.",
            hint="Run the model on the CPU, or use a remote GPU (a Linux Docker host or a "
                 "model URL).")
    info = client.info()
    runtimes = info.get("Runtimes") or {}
    if info.get("OSType", "linux") != "linux" or "nvidia" not in runtimes:
        known = ", ".join(sorted(runtimes)) or "none"
        raise RuntimeFailed(
            f"The Docker engine has no NVIDIA runtime (runtimes: {known}).",
            hint="Install the NVIDIA driver and the NVIDIA Container Toolkit, run "
                 "'sudo nvidia-ctk runtime configure --runtime=docker' and restart Docker; "
                 "or run the model on the CPU.")


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:40] or "model"


def container_config(image: str, *, model: str, owner: str, session_id: str,
                     mem_limit: Optional[int] = None, gpu: bool = False,
                     gpu_ids: Optional[list[str]] = None, shared_dir: Optional[str] = None,
                     env: Optional[dict[str, str]] = None, bind_ip: str = "127.0.0.1",
                     user: Optional[str] = None, swappiness: bool = False) -> dict:
    """The keyword arguments of ``client.containers.create`` for one session.

    Pure (no engine needed) so tests can check exactly what is asked for.
    ``swappiness``: also set mem_swappiness=0 (only cgroup v1 engines accept it).
    """
    labels = {OWNER_LABEL: owner, SESSION_LABEL: session_id, MODEL_LABEL: model,
              PID_LABEL: str(os.getpid()), HOST_LABEL: socket.gethostname(),
              STARTED_LABEL: process_start_time(os.getpid()) or ""}
    cfg: dict[str, Any] = {
        "image": image,
        "name": f"runway-{_slug(model)}-{session_id[:12]}",
        "detach": True,
        "labels": labels,
        # Host port None: Docker picks a free one on bind_ip; read back after start.
        "ports": {f"{CONTAINER_PORT}/tcp": (bind_ip, None)},
        "network_mode": "bridge",
        "privileged": False,
        # Cog needs no capability: it only listens on an unprivileged port and
        # manages its own worker process.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": PIDS_LIMIT,
        "environment": dict(env or {}),
        "auto_remove": False,  # we remove it ourselves, after reading why it died
    }
    if mem_limit:
        # Swap equal to the limit means no swap: over the limit the kernel kills.
        cfg["mem_limit"] = int(mem_limit)
        cfg["memswap_limit"] = int(mem_limit)
        if swappiness:
            cfg["mem_swappiness"] = 0
    if shared_dir:
        cfg["volumes"] = {shared_dir: {"bind": shared_dir, "mode": "rw"}}
    if user:
        cfg["user"] = user
    if gpu:
        from docker.types import DeviceRequest

        if gpu_ids:
            request = DeviceRequest(device_ids=[str(i) for i in gpu_ids],
                                    capabilities=[["gpu"]])
        else:
            request = DeviceRequest(count=-1, capabilities=[["gpu"]])  # every GPU
        cfg["device_requests"] = [request]
    return cfg


def _owner_alive(labels: dict) -> bool:
    """The owner rule (processes.owner_alive) read from a container's labels."""
    try:
        pid = int(labels.get(PID_LABEL, "0"))
    except ValueError:
        return False
    return owner_alive(pid, labels.get(STARTED_LABEL), labels.get(HOST_LABEL, ""))


def cleanup_orphans(client, owner: str) -> list[str]:
    """Remove containers that an earlier, crashed Blender of ``owner`` left.

    Only containers with our owner label are touched; of those, the ones whose
    Blender still runs on this machine are kept: this Blender's own (the add-on
    enabled again) and another Blender's of the same user. Returns the names of
    removed containers.
    """
    removed = []
    for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"}):
        labels = c.labels or {}
        if labels.get(OWNER_LABEL) != owner:  # belt and braces over the engine's filter
            continue
        if _owner_alive(labels):
            continue
        try:
            c.remove(force=True)
            removed.append(c.name)
        except Exception:  # already gone: fine
            pass
    return removed


def _size(n: int) -> str:
    return f"{n / (1 << 30):.3g} GB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MB"


def oom_message(mem_limit: Optional[int]) -> str:
    limit = f"limit {_size(mem_limit)}" if mem_limit else "no limit set"
    return (f"the model ran out of memory ({limit}): raise the container memory limit "
            "(and Docker Desktop's own memory limit)")


class DockerSession(ModelSession):
    """One Cog model server in one container. See the module docstring.

    ``mem_limit``: bytes (None: no limit). ``gpu``: NVIDIA GPUs (``gpu_ids``
    picks some; default all). ``docker_host``/``tls``: another engine.
    ``owner``: the owner label (default: this user on this machine).
    ``share_files``: mount a per-session folder (local engines only).
    ``pull``: try a registry when the image is missing. ``env``: extra
    container environment (e.g. COG_WEIGHTS). ``user``: the container user;
    default on Linux is this user's uid:gid, so shared files stay ours.
    ``publish_ip``: a remote engine's address for the model port (``publish_address``).
    """

    def __init__(self, name: str, image: str, *,
                 on_event: Optional[Callable[[SessionEvent], None]] = None,
                 mem_limit: Optional[int] = None, gpu: bool = False,
                 gpu_ids: Optional[list[str]] = None, docker_host: Optional[str] = None,
                 tls: Any = None, owner: Optional[str] = None, share_files: bool = True,
                 pull: bool = True, env: Optional[dict[str, str]] = None,
                 user: Optional[str] = None, client=None, publish_ip: Optional[str] = None):
        super().__init__(name, on_event)
        self.image = image
        self.publish_ip = publish_ip
        self.mem_limit = mem_limit
        self.gpu = gpu
        self.gpu_ids = gpu_ids
        self.docker_host = docker_host
        self.tls = tls
        self.owner = owner or default_owner()
        self.remote = _is_remote(docker_host)
        # Same-path mounts need a POSIX path on both sides: not with a remote engine,
        # not on Windows (C:\... is no path inside a Linux container).
        self.share_files = (share_files and not self.remote
                            and not sys.platform.startswith("win"))
        self.pull = pull
        self.env = dict(env or {})
        if user is None and not self.remote and hasattr(os, "getuid"):
            user = f"{os.getuid()}:{os.getgid()}"
        self.user = user
        self.session_id = ""
        self.container_id: Optional[str] = None
        self.host_port: Optional[int] = None
        self.oom_killed = False
        self._client = client
        self._owns_client = client is None  # made at start: closed at release
        self._container = None
        self._events = None  # the engine's event stream the watcher reads
        self._died: Optional[str] = None  # why the container ended, set by the watcher
        self._last_logs = ""

    # ------------------------------------------------------------------ start

    # The lifecycle is ModelSession's; these are the steps.
    def _reset(self) -> None:
        self.oom_killed = False
        self._died = None
        self.session_id = uuid.uuid4().hex

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._advance(SessionState.PREPARING, "connecting to Docker")
        if self._client is None:
            # An engine that never answers must not hold start() past its timeout.
            self._client = connect_engine(self.docker_host, tls=self.tls,
                                          timeout=max(1.0, min(60.0, timeout)))
        self._check_stop()
        if self.gpu:
            check_gpu_support(self._client, local=not self.remote)
        self._ensure_image(deadline)
        self._check_stop()
        self._create_and_start()
        self._advance(SessionState.STARTING, f"container {self.container_id[:12]} started")
        self._wait_ready(deadline)
        self._check_stop()
        self._check_alive()  # died between the last health answer and now
        self._advance(SessionState.RUNNING, f"ready at {self.url}")

    def _as_failure(self, exc: BaseException) -> RuntimeFailed:
        """The error a person can act on; an engine error says whether the engine
        is still there."""
        if isinstance(exc, RuntimeFailed):
            exc.details = exc.details or self._tail_logs()
            return exc
        return self._engine_failure(exc)

    def _engine_failure(self, exc: Exception) -> RuntimeFailed:
        if not self._engine_alive():
            return RuntimeFailed(f"{UNAVAILABLE}: the Docker engine stopped answering.",
                                 hint=unavailable_hint(), details=str(exc))
        return RuntimeFailed(f"Docker could not run model {self.name!r}: {exc}",
                             hint="See the details; check the image and Docker's settings.",
                             details=str(exc))

    def _engine_alive(self) -> bool:
        try:
            return bool(self._client and self._client.ping())
        except Exception:
            return False

    def _ensure_image(self, deadline: float) -> None:
        import docker.errors

        try:
            self._client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        build_hint = ("Build it offline from its model folder ('python3 build.py models docker "
                      "FOLDER' in a checkout), or check the image name, your network and "
                      "registry login.")
        if not self.pull:
            raise RuntimeFailed(f"The Docker image {self.image} is not on this machine.",
                                hint=build_hint, kind=Kind.IMAGE_MISSING)
        self._advance(SessionState.PREPARING, f"pulling {self.image}")
        try:
            self._pull(deadline)
        except RuntimeFailed:
            raise
        except _Stopped:
            raise
        except Exception as exc:
            if not self._engine_alive():
                raise
            raise RuntimeFailed(
                f"The Docker image {self.image} is not on this machine and could not be "
                f"pulled: {_short(exc)}", hint=build_hint, details=str(exc),
                kind=Kind.IMAGE_MISSING) from exc

    def _pull(self, deadline: float) -> None:
        """Pull with progress events; a helper thread reads the engine's stream so
        that stop() is honoured at once even while the stream is silent."""
        from docker.utils import parse_repository_tag

        repo, tag = parse_repository_tag(self.image)  # handles registry:port/x and @digest
        items: queue.Queue = queue.Queue()

        def read():
            try:
                for item in self._client.api.pull(repo, tag=tag or "latest", stream=True,
                                                  decode=True):
                    items.put(item)
                    if self._stop_requested.is_set():
                        break
                items.put(None)
            except Exception as exc:
                items.put(exc)

        threading.Thread(target=read, name=f"docker-pull-{self.name}", daemon=True).start()
        # Bytes downloaded per layer: [done, total]. The engine reports "Downloading"
        # and then "Extracting" with a current that starts again from 0, and often
        # no final 100% "Downloading": count downloads only, a layer is fully
        # downloaded once it verifies, extracts or completes, and done never goes back.
        layers: dict[str, list[int]] = {}
        last_emit = 0.0
        emitted = None
        extracting = False

        def emit():
            nonlocal last_emit, emitted
            done = sum(d for d, _ in layers.values())
            total = sum(t for _, t in layers.values())
            phase = "extracting" if extracting else "downloading"
            if emitted == (done, total, phase):
                return
            last_emit, emitted = time.monotonic(), (done, total, phase)
            self._advance(SessionState.PREPARING,
                          f"pulling {self.image}: {phase} {len(layers)} layers", done, total)

        while True:
            self._check_stop()
            if time.monotonic() > deadline:
                raise RuntimeFailed(f"Pulling {self.image} took too long.",
                                    hint="Check the network, or build the image offline.")
            try:
                item = items.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                if layers:
                    emit()  # the final state, which the rate limit may have held back
                return
            if isinstance(item, Exception):
                raise item
            if item.get("error"):
                raise RuntimeError(item["error"])
            layer_id = item.get("id")
            status = str(item.get("status") or "")
            detail = item.get("progressDetail") or {}
            total = int(detail.get("total") or 0)
            layer = layers.get(layer_id) if layer_id else None
            if layer_id and total > 0 and layer is None:
                layer = layers[layer_id] = [0, total]
            if layer is not None:
                if status == "Downloading":
                    layer[1] = max(layer[1], total)
                    layer[0] = min(layer[1], max(layer[0], int(detail.get("current") or 0)))
                elif status in ("Verifying Checksum", "Download complete", "Extracting",
                                "Pull complete"):
                    layer[0] = layer[1]
                if status == "Extracting":
                    extracting = True
            if layers and time.monotonic() - last_emit > 0.25:
                emit()

    def _create_and_start(self) -> None:
        if self.share_files:
            self.shared_dir = tempfile.mkdtemp(prefix=f"runway-{_slug(self.name)}-")
        cgroup_v1 = str(self._client.info().get("CgroupVersion", "1")) == "1"
        bind_ip, host = publish_address(self.docker_host, self.publish_ip)
        cfg = container_config(
            self.image, model=self.name, owner=self.owner, session_id=self.session_id,
            mem_limit=self.mem_limit, gpu=self.gpu, gpu_ids=self.gpu_ids,
            shared_dir=self.shared_dir, env=self.env, bind_ip=bind_ip, user=self.user,
            swappiness=cgroup_v1)
        since = int(time.time()) - 1
        container = self._client.containers.create(**cfg)
        with self._lock:  # stop() sees either the container or (here) its own request
            self._container = container
            self.container_id = container.id
        self._check_stop()
        self._watch(since)
        container.start()
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(
            f"{CONTAINER_PORT}/tcp") or []
        if not bindings:
            raise RuntimeFailed(f"Docker did not publish port {CONTAINER_PORT} of the model.",
                                details=str(container.attrs["NetworkSettings"]))
        self.host_port = int(bindings[0]["HostPort"])
        self.url = f"http://{host}:{self.host_port}"

    def _wait_ready(self, deadline: float) -> None:
        """READY through the Cog client; the watcher's news of a dead container
        (OOM, exit) ends the wait between polls."""
        from ..client import connect

        def check(health) -> bool:
            self._check_alive()
            return True

        with connect(self.url, protocol=self.protocol) as client:
            self._await_ready(client, deadline - time.monotonic(), check)

    def _check_alive(self) -> None:
        if self._died:
            raise RuntimeFailed(self._died, details=self._tail_logs(),
                                kind=Kind.CONTAINER_MEMORY if self.oom_killed else "")

    # ------------------------------------------------------------------ watcher

    def _watch(self, since: int) -> None:
        """Follow the engine's events for our container: OOM kills, deaths, and
        the engine itself going away."""
        try:
            self._events = self._client.events(
                since=since, decode=True,
                filters={"container": self.container_id, "event": ["oom", "die"]})
        except Exception:
            self._events = None
            return
        threading.Thread(target=self._watch_loop, args=(self._events,),
                         name=f"docker-watch-{self.name}", daemon=True).start()

    def _watch_loop(self, events) -> None:
        try:
            for ev in events:
                if self._stop_requested.is_set():
                    return
                action = ev.get("Action") or ev.get("status")
                if action == "oom":
                    self.oom_killed = True
                    self._fail_running(oom_message(self.mem_limit))
                elif action == "die":
                    self._on_die(ev)
                    return
        except Exception:
            pass
        if self._stop_requested.is_set():
            return
        if not self._engine_alive():  # the stream broke because the engine went away
            self._fail_running(f"{UNAVAILABLE}: the Docker engine stopped while model "
                               f"{self.name!r} was running. {unavailable_hint()}")

    def _on_die(self, ev: dict) -> None:
        code = (ev.get("Actor") or {}).get("Attributes", {}).get("exitCode", "?")
        oom = self.oom_killed
        try:
            self._container.reload()
            state = self._container.attrs.get("State") or {}
            oom = oom or bool(state.get("OOMKilled"))
            code = state.get("ExitCode", code)
            self._last_logs = self._container.logs(tail=200).decode("utf-8", "replace")
        except Exception:
            pass
        self.oom_killed = oom
        if oom:
            self._fail_running(oom_message(self.mem_limit))
            return
        self._fail_running(f"the model's container exited (exit code {code}); "
                           "see the model's logs")
        # A stopping engine kills its containers first and goes away just after:
        # look again, so "Docker stopped" is reported as that, not as a crash.
        if self._stop_requested.wait(2.0):
            return
        if not self._engine_alive():
            reason = (f"{UNAVAILABLE}: the Docker engine stopped while model {self.name!r} "
                      f"was running. {unavailable_hint()}")
            with self._lock:
                self._died = reason
            if self.state is SessionState.FAILED:
                self._emit(SessionState.FAILED, reason)

    def _fail_running(self, reason: str) -> None:
        """Record why the container is gone; FAILED now if it was already RUNNING
        (while starting, start() raises with this reason itself)."""
        with self._lock:
            if self._stop_requested.is_set():
                return
            if self._died is None or "out of memory" in reason:
                self._died = reason
            running = self.state is SessionState.RUNNING
        if running:
            self._emit(SessionState.FAILED, reason)

    def diagnose(self) -> Optional[str]:
        """Why a run failed, if the container or the engine knows (OOM, exit, engine
        gone); None when the container looks healthy. For callers whose request failed."""
        if self._died:
            return self._died
        if not self._engine_alive():
            return f"{UNAVAILABLE}: the Docker engine stopped answering. {unavailable_hint()}"
        try:
            self._container.reload()
            state = self._container.attrs.get("State") or {}
        except Exception:
            return None
        if state.get("OOMKilled"):
            self.oom_killed = True
            return oom_message(self.mem_limit)
        if not state.get("Running", True):
            return f"the model's container exited (exit code {state.get('ExitCode')})"
        return None

    # ------------------------------------------------------------------ stop, logs

    def _release(self) -> None:
        """Remove the container and the shared folder; idempotent, any thread."""
        with self._lock:
            container, self._container = self._container, None
            events, self._events = self._events, None
            shared, self.shared_dir = self.shared_dir, None
            self.url = None
        if events is not None:
            try:
                events.close()
            except Exception:
                pass
        if container is not None:
            try:
                self._last_logs = container.logs(tail=500).decode("utf-8", "replace")
            except Exception:
                pass
            try:
                container.remove(force=True)
            except Exception:  # already gone, or the engine is: nothing more to free here
                pass
        self.host_port = None
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
        if self._owns_client:
            # Its connection pool holds sockets to the engine; a pool of sessions that
            # each start once would otherwise keep them open until garbage collection.
            with self._lock:
                client, self._client = self._client, None
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass

    def logs(self) -> str:
        container = self._container
        if container is not None:
            try:
                return container.logs(tail=2000).decode("utf-8", "replace")
            except Exception:
                pass
        return self._last_logs

    def _tail_logs(self) -> str:
        return self.logs()[-4000:]


def _short(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if text else type(exc).__name__
