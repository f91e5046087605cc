"""Fault and bad-input suite: hostile loopback servers against every protocol client.

Every case asserts, through ``expect``:
- the error type (always a RunwayError subclass, never a bare Python or library error),
- that the message is actionable (a sentence, with a hint saying what to do),
- that the call ended within the timeout it was given plus MARGIN (a correctness
  bound, not a benchmark: 2 shared cores),
- that the token appears nowhere in the message, hint, details, str or repr,
- and (the ``sandbox`` fixture) that nothing was written outside the target folder.
Memory-bound cases also check the traced peak with tracemalloc.
"""
from __future__ import annotations

import json
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from runway_addon.core import catalog
from runway_addon.core.client import connect
from runway_addon.core.codecs import FileValue
from runway_addon.core.errors import (AuthError, BadAnswer, Cancelled, CodecError,
                                      ConnectionFailed, ModelNotReady, RunwayError, ServerError,
                                      SpecValidationError, TimedOut, UnknownCommand, UsageError)
from runway_addon.core.protocols import http
from runway_addon.core.protocols.base import HealthState
from runway_addon.core.protocols.cog import CogClient, spec_from_openapi
from runway_addon.core.protocols.detect import detect_protocol
from runway_addon.core.protocols.replicate import ReplicateClient
from runway_addon.core.protocols.runway import HostedRunwayClient, RunwayClient
from runway_addon.core.runtimes.base import RuntimeFailed
from runway_addon.core.runtimes.process import free_port, read_cog_yaml
from tests.servers.hostile import (HostileServer, cog_routes, cog_schema, runway_meta,
                                   runway_routes)

pytestmark = pytest.mark.network

TOKEN = "tok-Zq81-very-secret-value-55aa"
MARGIN = 1.5  # seconds over the given timeout that a call may take (scheduling, teardown)


# --------------------------------------------------------------------------- harness

@pytest.fixture
def servers():
    started = []

    def start(routes=None) -> HostileServer:
        s = HostileServer(routes)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """cwd in tmp_path/work; after the test only tmp_path/out may have changed."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    yield out
    changed = {p for p in _tree(tmp_path) - before if not p.startswith("out/")}
    assert not changed, f"written outside the target folder: {sorted(changed)}"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def expect(kind, fn, *, within: float, token: str = TOKEN):
    """Run ``fn``; assert it raised ``kind`` (a RunwayError) actionably, in time, leak-free."""
    t0 = time.monotonic()
    with pytest.raises(RunwayError) as info:
        fn()
    took = time.monotonic() - t0
    err = info.value
    assert isinstance(err, kind), f"{type(err).__name__}: {err}"
    assert took <= within + MARGIN, f"took {took:.2f} s, bound {within} s: {err}"
    assert len(err.message) >= 15, err.message
    assert err.hint or isinstance(err, Cancelled), f"no hint: {err.message}"
    no_leak(token, err.message, err.hint, err.details, str(err), repr(err))
    return err


def no_leak(token, *texts):
    for text in texts:
        assert token not in (text or ""), f"token leaked: {text[:300]}"
        assert token[:12] not in (text or ""), f"token part leaked: {text[:300]}"


def cog(server, **kw) -> CogClient:
    kw.setdefault("timeout", 3.0)
    return CogClient(server.url, token=kw.pop("token", TOKEN), **kw)


def runway(server, **kw) -> RunwayClient:
    kw.setdefault("timeout", 3.0)
    return RunwayClient(server.url, token=kw.pop("token", TOKEN), **kw)


def schema_server(servers, schema_or_fn):
    routes = cog_routes()
    fn = schema_or_fn if callable(schema_or_fn) else (lambda r: r.json(schema_or_fn))
    routes[("GET", "/openapi.json")] = fn
    return servers(routes)


def deep(n: int) -> str:
    return "[" * n + "]" * n


# --------------------------------------------------------------------------- Cog: schemas

BAD_SCHEMAS = {
    "not-json": lambda r: r.raw(200, b"<html>hello</html>", content_type="text/html"),
    "json-array": lambda r: r.json([1, 2, 3]),
    "json-string": lambda r: r.json("openapi"),
    "valid-json-not-a-model": lambda r: r.json({"openapi": "3.0.2", "paths": {}}),
    "input-properties-list": lambda r: r.json(cog_schema(inputs=[1, 2])),  # type: ignore
    "property-is-a-string": lambda r: r.json(cog_schema(inputs={"x": "string"})),
    "self-ref": lambda r: r.json(_ref_cycle(self_ref=True)),
    "mutual-ref-cycle": lambda r: r.json(_ref_cycle(self_ref=False)),
    "ref-outside-document": lambda r: r.json(cog_schema(
        inputs={"x": {"$ref": "http://evil.example/schema.json"}})),
    "enum-not-a-list": lambda r: r.json(cog_schema(inputs={"x": {"type": "string",
                                                                 "enum": "abc"}})),
    "minLength-a-string": lambda r: r.json(cog_schema(inputs={"x": {"type": "string",
                                                                    "minLength": "abc"}})),
    "pattern-a-number": lambda r: r.json(cog_schema(inputs={"x": {"type": "string",
                                                                  "pattern": 5}})),
    "output-a-list": lambda r: r.json({**cog_schema(), "components": {"schemas": {
        "Input": cog_schema()["components"]["schemas"]["Input"], "Output": [1]}}}),
    "parser-deep-100k": lambda r: r.raw(200, deep(100_000).encode()),
    "document-deep-500": lambda r: r.raw(200, ('{"a":' * 500 + "1" + "}" * 500).encode()),
    "truncated-body": lambda r: r.truncated(),
    "invalid-utf8": lambda r: r.raw(200, b'{"openapi": "\xff\xfe"}'),
    "declared-10-GB": lambda r: r.raw(200, b"{}", {"Content-Length": str(10 << 30)}),
    "empty-200": lambda r: r.raw(200, b""),
}


def _ref_cycle(self_ref: bool) -> dict:
    s = cog_schema(inputs={"x": {"allOf": [{"$ref": "#/components/schemas/A"}]}})
    s["components"]["schemas"]["A"] = {"$ref": "#/components/schemas/A" if self_ref
                                       else "#/components/schemas/B"}
    s["components"]["schemas"]["B"] = {"$ref": "#/components/schemas/A"}
    return s


@pytest.mark.parametrize("case", sorted(BAD_SCHEMAS))
def test_cog_bad_schema_is_a_typed_error(servers, sandbox, case):
    server = schema_server(servers, BAD_SCHEMAS[case])
    with cog(server) as client:
        expect((BadAnswer, ConnectionFailed), client.spec, within=3)


def test_cog_schema_trickled_a_byte_at_a_time_ends_at_the_timeout(servers, sandbox):
    server = schema_server(servers, lambda r: r.trickle(delay=0.2))
    with cog(server, timeout=1.0) as client:
        expect(TimedOut, client.openapi, within=1.0)


def test_cog_schema_status_line_trickled_ends_at_the_timeout(servers, sandbox):
    server = schema_server(servers, lambda r: r.trickle(delay=0.2, headers_too=True))
    with cog(server, timeout=1.0) as client:
        expect(TimedOut, client.openapi, within=1.0)


def test_cog_schema_that_never_answers_ends_at_the_timeout(servers, sandbox):
    server = schema_server(servers, lambda r: r.hang())
    with cog(server, timeout=1.0) as client:
        expect(TimedOut, client.openapi, within=1.0)


def test_cog_gzip_bomb_schema_refused_with_bounded_memory(servers, sandbox):
    server = schema_server(servers, lambda r: r.gzip_bomb(200 << 20))
    with cog(server, timeout=10.0) as client:
        tracemalloc.start()
        try:
            expect(BadAnswer, client.openapi, within=10)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < http.MAX_META_BYTES * 3, f"peak {peak >> 20} MB"


def test_cog_schema_401_is_an_auth_error_without_the_token(servers, sandbox):
    server = schema_server(servers, lambda r: r.json({"detail": f"bad token {TOKEN}"}, 401))
    with cog(server) as client:
        expect(AuthError, client.spec, within=3)


def test_cog_schema_500_html(servers, sandbox):
    server = schema_server(servers, lambda r: r.raw(500, b"<h1>oops</h1>", content_type="text/html"))
    with cog(server) as client:
        expect(ServerError, client.spec, within=3)


def test_cog_odd_but_readable_schema_still_loads(servers, sandbox):
    """x-order as a string, required as a string, a bad description: ignored, not fatal."""
    s = cog_schema(inputs={"b": {"type": "string", "x-order": "1", "description": 5},
                           "a": {"type": "integer", "x-order": 0}})
    s["components"]["schemas"]["Input"]["required"] = "ab"
    with cog(schema_server(servers, s)) as client:
        spec = client.spec()
    assert [f.name for f in spec.command().inputs][0] == "a"


def test_spec_from_openapi_refuses_non_model_documents_directly():
    for doc in ({}, {"components": {}}, [], "x", {"components": {"schemas": {"Input": 3}}}):
        with pytest.raises(BadAnswer, match="not a Cog model"):
            spec_from_openapi(doc)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Cog: health

@pytest.mark.parametrize("answer,state", [
    (lambda r: r.raw(200, b"not json"), HealthState.UNHEALTHY),
    (lambda r: r.json({"status": ["READY"]}), HealthState.UNHEALTHY),
    (lambda r: r.json({"status": "READY", "setup": "a string"}), HealthState.READY),
    (lambda r: r.json([1, 2]), HealthState.UNHEALTHY),
    (lambda r: r.raw(200, deep(50_000).encode()), HealthState.UNHEALTHY),
    (lambda r: r.close(), HealthState.UNREACHABLE),
    (lambda r: r.hang(), HealthState.UNHEALTHY),
])
def test_cog_health_answers_a_state_never_raises(servers, sandbox, answer, state):
    routes = cog_routes()
    routes[("GET", "/health-check")] = answer
    with cog(servers(routes), health_timeout=1.0) as client:
        t0 = time.monotonic()
        h = client.health()
    assert h.state is state and time.monotonic() - t0 < 1.0 + MARGIN
    no_leak(TOKEN, h.detail, h.logs)


def test_cog_wait_until_ready_on_a_hanging_server_ends_at_its_timeout(servers, sandbox):
    routes = cog_routes()
    routes[("GET", "/health-check")] = lambda r: r.hang()
    with cog(servers(routes), health_timeout=5.0) as client:
        expect(ModelNotReady, lambda: client.wait_until_ready(1.5), within=1.5)


def test_cog_defunct_worker_is_reported_as_dead(servers, sandbox):
    routes = cog_routes(health={"status": "DEFUNCT", "setup": {"logs": f"boom {TOKEN}"}})
    with cog(servers(routes)) as client:
        err = expect(ModelNotReady, lambda: client.wait_until_ready(2), within=2)
    assert "died" in err.message


# --------------------------------------------------------------------------- Cog: predictions

def predict_server(servers, answer, schema=None):
    """A Cog server whose PUT /predictions/{id} answers with ``server.answer``
    (replaceable), and whose cancel answers {}."""
    s = servers(cog_routes(schema))
    s.answer = answer

    def predictions(r):
        if r.path.endswith("/cancel"):
            r.json({})
        else:
            s.answer(r)

    s.prefix("/predictions/", predictions)
    return s


PREDICTIONS = {
    "200-not-json": (lambda r: r.raw(200, b"<html/>", content_type="text/html"), BadAnswer),
    "200-json-list": (lambda r: r.json([1]), BadAnswer),
    "200-status-unknown": (lambda r: r.json({"status": {"x": 1}}), BadAnswer),
    "failed-echoing-token": (lambda r: r.json({"status": "failed", "error": f"bad {TOKEN}",
                                               "logs": f"Authorization: Bearer {TOKEN}"}),
                             ServerError),
    "422-detail-a-string": (lambda r: r.json({"detail": "nope"}, 422), ServerError),
    "422-loc-not-a-list": (lambda r: r.json({"detail": [{"loc": "body", "msg": 5}, 7]}, 422),
                           ServerError),
    "500-echoing-token": (lambda r: r.raw(500, f"token was {TOKEN}".encode(),
                                          content_type="text/plain"), ServerError),
    "truncated": (lambda r: r.truncated(), BadAnswer),
    "closed-without-answer": (lambda r: r.close(), ConnectionFailed),
    "not-http": (lambda r: r.garbage(), ConnectionFailed),
    "gzip-bomb-500": (lambda r: r.gzip_bomb(100 << 20, status=500), ServerError),
    "output-wrong-type": (lambda r: r.json({"status": "succeeded", "output": {"a": [1]}}),
                          RunwayError),
    "deep-output": (lambda r: r.raw(200, ('{"status":"succeeded","output":' + deep(5000)
                                          + "}").encode()), BadAnswer),
    "502-from-a-proxy": (lambda r: r.raw(502, b"Bad Gateway", content_type="text/plain"),
                         ServerError),
}


@pytest.mark.parametrize("case", sorted(PREDICTIONS))
def test_cog_bad_prediction_answer_is_typed(servers, sandbox, case):
    answer, kind = PREDICTIONS[case]
    with cog(predict_server(servers, answer)) as client:
        err = expect(kind, lambda: client.run({"text": "hi"}), within=3)
    if case.startswith("422-loc"):
        assert err.status == 422


def test_cog_422_names_the_field(servers, sandbox):
    answer = lambda r: r.json({"detail": [{"loc": ["body", "input", "text"],  # noqa: E731
                                           "msg": "too long", "type": "value_error"}]}, 422)
    with cog(predict_server(servers, answer)) as client:
        err = expect(ServerError, lambda: client.run({"text": "hi"}), within=3)
    assert err.field == "text" and "text" in err.hint


def test_cog_prediction_trickled_ends_at_the_run_timeout(servers, sandbox):
    with cog(predict_server(servers, lambda r: r.trickle(delay=0.3)), timeout=1.5) as client:
        expect(TimedOut, lambda: client.run({"text": "hi"}), within=1.5)


def test_cog_busy_forever_is_bounded_by_busy_timeout(servers, sandbox):
    answer = lambda r: r.json({"error": "At capacity - all prediction slots busy"}, 409)  # noqa
    with cog(predict_server(servers, answer), busy_timeout=1.0, timeout=5) as client:
        err = expect(ServerError, lambda: client.run({"text": "hi"}), within=1.0)
    assert err.status == 409 and "busy" in err.message


def test_cog_busy_forever_is_bounded_by_the_run_timeout(servers, sandbox):
    answer = lambda r: r.json({"error": "At capacity"}, 409)  # noqa: E731
    with cog(predict_server(servers, answer), busy_timeout=60, timeout=1.0) as client:
        expect(TimedOut, lambda: client.run({"text": "hi"}), within=1.0)


def test_cog_busy_with_a_dead_worker_says_it_died(servers, sandbox):
    server = predict_server(servers, lambda r: r.json({"error": "At capacity"}, 409))
    server.routes[("GET", "/health-check")] = lambda r: r.json({"status": "DEFUNCT"})
    with cog(server, busy_timeout=30) as client:
        err = expect(ModelNotReady, lambda: client.run({"text": "hi"}), within=3)
    assert "died" in err.message and "Restart" in err.hint


def the_cancel_once_here(ev, answer):
    """A route that sets ``ev`` once the request is on the server, then answers: the
    cancel comes with the request surely sent (no timer racing it)."""
    def route(r):
        ev.set()
        answer(r)
    return route


def test_cog_cancel_of_a_run_the_server_ignores_is_bounded(servers, sandbox):
    ev = threading.Event()
    server = predict_server(servers, the_cancel_once_here(ev, lambda r: r.hang()))
    with cog(server, timeout=30) as client:
        client.cancel_grace = 0.5
        expect(Cancelled, lambda: client.run({"text": "hi"}, cancel_event=ev), within=1.0)
    assert [r for r in server.log if r["method"] == "PUT"]  # it was sent, then given up


def test_cog_unknown_command_refused_before_sending(servers, sandbox):
    server = predict_server(servers, lambda r: r.json({"status": "succeeded", "output": "x"}))
    with cog(server) as client:
        err = expect(UnknownCommand, lambda: client.run({"text": "a"}, "train"), within=3)
    assert "train" in err.message and "predict" in err.message
    assert not [r for r in server.log if r["method"] == "PUT"]


def test_cog_missing_required_input_refused_before_sending(servers, sandbox):
    schema = cog_schema(inputs={"image": {"type": "string", "format": "uri"}},
                        required=["image"])
    server = predict_server(servers, lambda r: r.json({"status": "succeeded"}), schema)
    with cog(server) as client:
        err = expect(SpecValidationError, lambda: client.run({}), within=3)
    assert err.issues[0].field == "image"
    assert not [r for r in server.log if r["method"] == "PUT"]


def test_cog_pathological_server_pattern_is_not_run(servers, sandbox):
    schema = cog_schema(inputs={"t": {"type": "string", "pattern": "^(a+)+$"}})
    server = predict_server(servers, lambda r: r.json({"detail": [
        {"loc": ["body", "input", "t"], "msg": "pattern"}]}, 422), schema)
    with cog(server) as client:
        # Backtracking "^(a+)+$" over this value would take far past the bound.
        expect(ServerError, lambda: client.run({"t": "a" * 40 + "!"}), within=3)
    puts = [r for r in server.log if r["method"] == "PUT"]  # sent: the server judges it
    assert len(puts) == 1 and b"a" * 40 + b"!" in puts[0]["body"]


def test_cog_metrics_of_the_wrong_type_are_dropped(servers, sandbox):
    answer = lambda r: r.json({"status": "succeeded", "output": "ok",  # noqa: E731
                               "metrics": "fast", "logs": ["a"]})
    with cog(predict_server(servers, answer)) as client:
        result = client.run({"text": "hi"})
    assert result.outputs["output"] == "ok" and result.metrics == {}


# --------------------------------------------------------------------------- output files

def file_schema():
    return cog_schema(output={"type": "string", "format": "uri", "title": "Output"})


def output_at(url):
    return lambda r: r.json({"status": "succeeded", "output": url})


def test_output_on_another_port_is_fetched_without_the_token(servers, sandbox):
    other = servers({("GET", "/f.txt"): lambda r: r.raw(200, b"data", content_type="text/plain")})
    server = predict_server(servers, output_at(other.url + "/f.txt"), file_schema())
    with cog(server) as client:
        out = client.run({"text": "x"}).outputs["output"]
    assert out.read_bytes() == b"data"
    assert "authorization" not in other.log[0]["headers"]


def test_output_on_the_same_origin_gets_the_token(servers, sandbox):
    server = predict_server(servers, None, file_schema())
    server.answer = output_at(server.url + "/files/f.txt")
    server.route("/files/f.txt", lambda r: r.raw(200, b"mine", content_type="text/plain"))
    with cog(server) as client:
        assert client.run({"text": "x"}).outputs["output"].read_bytes() == b"mine"
    assert server.requests_to("/files/f.txt")[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_redirect_to_another_port_drops_the_token(servers, sandbox):
    other = servers({("GET", "/f.txt"): lambda r: r.raw(200, b"moved", content_type="text/plain")})
    server = predict_server(servers, None, file_schema())
    server.answer = output_at(server.url + "/files/f.txt")
    server.route("/files/f.txt", lambda r: r.redirect(other.url + "/f.txt"))
    with cog(server) as client:
        assert client.run({"text": "x"}).outputs["output"].read_bytes() == b"moved"
    assert "authorization" not in other.log[0]["headers"]


def test_redirect_loop_is_bounded(servers, sandbox):
    server = predict_server(servers, None, file_schema())
    server.answer = output_at(server.url + "/loop")
    server.route("/loop", lambda r: r.redirect("/loop"))
    with cog(server) as client:
        expect(BadAnswer, lambda: client.run({"text": "x"}), within=3)


def test_output_file_url_is_refused(servers, sandbox):
    server = predict_server(servers, output_at("file:///etc/passwd"), file_schema())
    with cog(server) as client:
        expect(CodecError, lambda: client.run({"text": "x"}), within=3)


def test_output_bare_path_outside_shared_folder_is_refused(servers, sandbox):
    server = predict_server(servers, output_at("/etc/passwd"), file_schema())
    with cog(server) as client:
        expect(CodecError, lambda: client.run({"text": "x"}), within=3)


def test_output_404_is_a_server_error(servers, sandbox):
    other = servers()
    server = predict_server(servers, output_at(other.url + "/gone.png"), file_schema())
    with cog(server) as client:
        err = expect(ServerError, lambda: client.run({"text": "x"}), within=3)
    assert err.status == 404


def test_output_larger_than_the_cap_is_refused(servers, sandbox, monkeypatch):
    monkeypatch.setattr(http, "MAX_FILE_BYTES", 1 << 20)
    monkeypatch.setattr(http.fetch, "__kwdefaults__",
                        {**http.fetch.__kwdefaults__, "limit": 1 << 20})
    other = servers({("GET", "/big.bin"): lambda r: r.raw(200, b"x" * (3 << 20),
                                                          content_type="application/x")})
    server = predict_server(servers, output_at(other.url + "/big.bin"), file_schema())
    with cog(server) as client:
        expect(BadAnswer, lambda: client.run({"text": "x"}), within=3)


def test_output_trickled_file_ends_at_the_run_timeout(servers, sandbox):
    other = servers({("GET", "/slow.bin"): lambda r: r.trickle(b"x" * 100, delay=0.2)})
    server = predict_server(servers, output_at(other.url + "/slow.bin"), file_schema())
    with cog(server, timeout=1.5) as client:
        expect(TimedOut, lambda: client.run({"text": "x"}), within=1.5)


def test_server_chosen_file_names_stay_in_the_target_folder(servers, sandbox):
    name = "%2E%2E%2F%2E%2E%2F" + "é" * 200 + ".wav"
    other = servers()
    other.prefix("/", lambda r: r.raw(200, b"RIFF", content_type="audio/wav"))
    server = predict_server(servers, output_at(other.url + "/../../" + name), file_schema())
    with cog(server) as client:
        out: FileValue = client.run({"text": "x"}).outputs["output"]
    path = Path(out.save(str(sandbox)))
    assert path.parent == sandbox and path.suffix == ".wav"
    assert len(path.name.encode()) <= 255


def test_bare_bytes_for_a_file_input_keep_the_asked_extension(tmp_path):
    from runway_addon.core.codecs import encode_value
    from runway_addon.core.protocols.cog import cog_wire
    from runway_addon.core.spec import FileField
    f = FileField(name="audio", accept=".wav,audio/wav")
    wire = encode_value(f, b"RIFF", cog_wire(shared_dir=str(tmp_path)))
    assert wire.endswith(".wav") and Path(wire).parent == tmp_path


# --------------------------------------------------------------------------- tokens

def test_token_with_a_newline_inside_is_refused_unechoed(servers, sandbox):
    server = servers(cog_routes())
    bad = "tok-Zq81-very\nsecret-value-55aa"
    err = expect(AuthError, lambda: CogClient(server.url, token=bad), within=1, token=bad)
    no_leak("secret-value-55aa", err.message, err.hint, repr(err))
    assert not server.log


def test_token_with_a_trailing_newline_is_cleaned(servers, sandbox):
    server = servers(cog_routes())
    with CogClient(server.url, token=TOKEN + "\n") as client:
        assert client.health().state is HealthState.READY
    assert server.log[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_token_never_in_repr_or_vars(servers):
    server = servers(cog_routes())
    for client in (CogClient(server.url, token=TOKEN), RunwayClient(server.url, token=TOKEN),
                   ReplicateClient("a/b", token=TOKEN, base_url=server.url)):
        assert TOKEN not in repr(client)
        assert TOKEN not in repr(vars(getattr(client, "_session", None)
                                      or getattr(client, "session")))
        client.close()


def test_secret_input_echoed_by_the_server_is_masked(servers, sandbox):
    schema = cog_schema(inputs={"key": {"type": "string", "format": "password",
                                        "x-cog-secret": True}})
    secret = "sk-live-1234567890abcdef"
    server = predict_server(servers, lambda r: r.json(
        {"status": "failed", "error": f"key {secret} refused"}), schema)
    with cog(server) as client:
        expect(ServerError, lambda: client.run({"key": secret}), within=3, token=secret)


# --------------------------------------------------------------------------- detect, connect

def test_connect_to_a_closed_port(sandbox):
    url = f"http://127.0.0.1:{free_port()}"
    expect(ConnectionFailed, lambda: connect(url, timeout=2), within=2)


def test_detect_against_a_trickling_server_is_bounded(servers, sandbox):
    server = servers()
    server.prefix("/", lambda r: r.trickle(delay=0.3))
    expect(ServerError, lambda: detect_protocol(server.url, timeout=1.0), within=2.0)


def test_detect_against_garbage(servers, sandbox):
    server = servers()
    server.prefix("/", lambda r: r.garbage())
    expect(ConnectionFailed, lambda: detect_protocol(server.url, timeout=1.0), within=2.0)


def test_connect_unknown_protocol_and_bad_timeout(sandbox):
    expect(UsageError, lambda: connect("http://127.0.0.1:9", protocol="grpc"), within=1)
    expect(UsageError, lambda: connect("http://127.0.0.1:9", protocol="cog",
                                       timeout=float("nan")), within=1)


def test_detect_not_a_url(sandbox):
    expect(ConnectionFailed, lambda: detect_protocol("ftp://x/"), within=1)


# --------------------------------------------------------------------------- Runway SDK

META_CASES = {
    "commands-not-a-list": {"modelSDKVersion": "0.6.1", "commands": {"a": 1}},
    "valid-json-not-a-model": {"hello": "world"},
    "command-is-a-number": runway_meta(commands=[5]),
    "inputs-a-dict": runway_meta(commands=[{"name": "x", "inputs": {"a": 1}, "outputs": []}]),
    "options-a-string": {**runway_meta(), "options": "fast"},
}


@pytest.mark.parametrize("case", sorted(META_CASES))
def test_runway_bad_meta_is_refused(servers, sandbox, case):
    routes = runway_routes(META_CASES[case])
    with runway(servers(routes)) as client:
        expect(BadAnswer, client.spec, within=3)


def test_runway_meta_not_json_anywhere(servers, sandbox):
    routes = runway_routes()
    routes[("GET", "/meta")] = routes[("GET", "/")] = lambda r: r.raw(200, b"<html>")
    with runway(servers(routes)) as client:
        expect(BadAnswer, client.spec, within=3)


def test_runway_odd_field_types_become_pass_through_fields(servers, sandbox):
    meta = runway_meta(commands=[{"name": "go", "inputs": [
        {"name": "n", "type": "number", "min": "zero"},
        {"name": "c", "type": "category", "oneOf": 5},
        {"name": "l", "type": "image_landmarks", "length": 2, "labels": ["a"],
         "connections": [["a", "zzz"]]}, 7], "outputs": []}])
    with runway(servers(runway_routes(meta))) as client:
        spec = client.spec()
    assert [f.type for f in spec.command().inputs] == ["any", "any", "any", "any"]


RUN_CASES = {
    "answer-a-list": (lambda r: r.json([1, 2]), BadAnswer),
    "answer-not-json": (lambda r: r.raw(200, b"ok", content_type="text/plain"), BadAnswer),
    "truncated": (lambda r: r.truncated(), BadAnswer),
    "gzip-bomb": (lambda r: r.gzip_bomb(200 << 20), BadAnswer),
    "400-echoing-token": (lambda r: r.json({"error": f"Invalid argument: text {TOKEN}"}, 400),
                          ServerError),
    "401": (lambda r: r.json({"error": "no"}, 401), AuthError),
    "500-bare": (lambda r: r.json({"error": "Internal server error."}, 500), ServerError),
    "closed": (lambda r: r.close(), ConnectionFailed),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_runway_bad_run_answer_is_typed(servers, sandbox, case):
    answer, kind = RUN_CASES[case]
    routes = runway_routes()
    routes[("POST", "/echo")] = answer
    with runway(servers(routes), timeout=5) as client:
        client.spec()
        tracemalloc.start()
        try:
            expect(kind, lambda: client.run({"text": "hi"}), within=5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak >> 20} MB"  # the bomb inflates to 200 MB


def test_runway_run_trickled_ends_at_the_timeout(servers, sandbox):
    routes = runway_routes()
    routes[("POST", "/echo")] = lambda r: r.trickle(delay=0.3)
    with runway(servers(routes), timeout=1.5) as client:
        client.spec()
        expect(TimedOut, lambda: client.run({"text": "hi"}), within=1.5)


def test_runway_cancel_closes_the_request_at_once(servers, sandbox):
    routes = runway_routes()
    ev = threading.Event()
    routes[("POST", "/echo")] = the_cancel_once_here(ev, lambda r: r.hang())
    with runway(servers(routes), timeout=30) as client:
        client.spec()
        err = expect(Cancelled, lambda: client.run({"text": "hi"}, cancel_event=ev),
                     within=0.5)
    assert "cannot stop a run over HTTP" in err.hint  # abandoned in flight, not before
    assert threading.active_count() < 50


def test_runway_jpeg_for_a_four_channel_output_is_refused_before_sending(servers, sandbox):
    meta = runway_meta(commands=[{"name": "paint", "inputs": [], "outputs": [
        {"name": "image", "type": "image", "channels": 4}]}])
    server = servers(runway_routes(meta))
    with runway(server) as client:
        client.spec()
        err = expect(SpecValidationError,
                     lambda: client.run({}, "paint", output_format="JPEG"), within=1)
    assert err.issues[0].field == "image"
    assert not server.requests_to("/paint")


def test_runway_unknown_command_refused_before_sending(servers, sandbox):
    server = servers(runway_routes())
    with runway(server) as client:
        client.spec()
        expect(UnknownCommand, lambda: client.run({}, "nothing"), within=1)
    assert not [r for r in server.log if r["method"] == "POST"]


def test_runway_healthcheck_that_hangs_counts_as_starting(servers, sandbox):
    routes = runway_routes()
    routes[("GET", "/healthcheck")] = lambda r: r.hang()
    with runway(servers(routes), health_timeout=0.5) as client:
        t0 = time.monotonic()
        assert client.health().state is HealthState.STARTING
    assert time.monotonic() - t0 < 0.5 + MARGIN


def test_runway_output_url_elsewhere_gets_no_token(servers, sandbox):
    other = servers({("GET", "/o.txt"): lambda r: r.raw(200, b"x", content_type="text/plain")})
    meta = runway_meta(commands=[{"name": "f", "inputs": [], "outputs": [
        {"name": "file", "type": "image"}]}])
    routes = runway_routes(meta)
    routes[("POST", "/f")] = lambda r: r.json({"file": other.url + "/o.txt"})
    with runway(servers(routes)) as client:
        client.spec()
        with pytest.raises(CodecError):  # not an image, but fetched: without the token
            client.run({}, "f")
    assert other.log and "authorization" not in other.log[0]["headers"]


def test_hosted_throttled_forever_is_bounded(servers, sandbox):
    server = servers()
    server.prefix("/v1", lambda r: r.json({"error": "slow down"}, 429,
                                         {"Retry-After": "100000000"}))
    client = HostedRunwayClient(server.url, token=TOKEN, timeout=2.0, max_backoff=0.3,
                                max_attempts=4)
    expect(ServerError, client.spec, within=2.0)


@pytest.mark.parametrize("value,seconds", [
    ("5", 5.0), ("-3", 0.0), ("nan", None), ("inf", http.MAX_RETRY_AFTER), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("1e308", http.MAX_RETRY_AFTER), ("", None),
])
def test_retry_after_is_parsed_and_bounded(value, seconds):
    assert http.retry_after({"Retry-After": value}) == seconds


# --------------------------------------------------------------------------- Replicate

def replicate_server(servers, version=None, prediction=None):
    schema = cog_schema()
    version = version if version is not None else {"id": "v1", "openapi_schema": schema}
    server = servers({
        ("GET", "/v1/models/a/b"): lambda r: r.json({"owner": "a", "name": "b"}),
        ("GET", "/v1/models/a/b/versions/v1"): lambda r: r.json(version),
    })
    if prediction is not None:
        server.route("/v1/predictions", prediction, method="POST")
    return server


def replicate(server, **kw):
    return ReplicateClient("a/b:v1", token=TOKEN, base_url=server.url, wait=1,
                           poll_interval=0.1, **kw)


def test_replicate_version_schema_not_a_model(servers, sandbox):
    server = replicate_server(servers, {"id": "v1", "openapi_schema": {"openapi": "3"}})
    expect(BadAnswer, replicate(server).spec, within=3)


def test_replicate_prediction_not_json(servers, sandbox):
    server = replicate_server(servers, prediction=lambda r: r.raw(201, b"<html>"))
    expect(BadAnswer, lambda: replicate(server).run({"text": "x"}), within=3)


def test_replicate_prediction_without_id(servers, sandbox):
    server = replicate_server(servers, prediction=lambda r: r.json({"status": "starting"}, 201))
    expect(BadAnswer, lambda: replicate(server).run({"text": "x"}), within=3)


def test_replicate_polling_a_hanging_api_ends_at_the_timeout(servers, sandbox):
    server = replicate_server(servers, prediction=lambda r: r.json(
        {"id": "p1", "status": "processing"}, 201))
    server.route("/v1/predictions/p1", lambda r: r.hang(), method="GET")
    server.route("/v1/predictions/p1/cancel", lambda r: r.json({}), method="POST")
    expect(TimedOut, lambda: replicate(server, timeout=1.5).run({"text": "x"}), within=1.5)


def test_replicate_token_echoed_in_a_401(servers, sandbox):
    server = servers()
    server.prefix("/v1", lambda r: r.json({"detail": f"token {TOKEN} invalid"}, 401))
    expect(AuthError, replicate(server).spec, within=3)


# --------------------------------------------------------------------------- catalog, runtimes

def _card(folder: Path, name: str, raw: bytes) -> None:
    (folder / name).mkdir()
    (folder / name / "card.json").write_bytes(raw)


def test_catalog_survives_a_deep_and_a_non_utf8_card(tmp_path):
    good = json.loads((Path(__file__).resolve().parents[2] / "models" / "pose" / "card.json")
                      .read_text())
    _card(tmp_path, "good", json.dumps(good).encode())
    _card(tmp_path, "deep", deep(100_000).encode())
    _card(tmp_path, "latin1", '{"name": "caf\xe9"}'.encode("latin-1"))
    _card(tmp_path, "deep-dict", ('{"name":' * 3000 + '"x"' + "}" * 3000).encode())
    cat = catalog.Catalog.load([tmp_path])
    assert [c.name for c in cat.cards] == [good["name"]]
    assert len(cat.errors) == 3 and all(isinstance(e, RunwayError) for e in cat.errors)
    assert any("UTF-8" in e.message for e in cat.errors)


def test_cog_yaml_that_is_not_utf8(tmp_path):
    (tmp_path / "cog.yaml").write_bytes(b"predict: \"predict.py:P\"\n# caf\xe9\n")
    expect(RuntimeFailed, lambda: read_cog_yaml(tmp_path), within=1)


def test_docker_unavailable_is_said_plainly(tmp_path):
    from runway_addon.core.runtimes.docker import connect_engine
    err = expect(RuntimeFailed, lambda: connect_engine(f"unix://{tmp_path}/none.sock",
                                                       timeout=2), within=2)
    assert "Docker unavailable" in err.message


def test_remote_session_to_an_unreachable_server(sandbox):
    from runway_addon.core.runtimes.remote import RemoteSession
    s = RemoteSession(f"http://127.0.0.1:{free_port()}", token=TOKEN, timeout=2)
    expect(RunwayError, lambda: s.start(timeout=2), within=2 + 2)
    assert s.state.value == "failed"


# --------------------------------------------------------------------------- refused tokens,
# servers still setting up, URL outputs, network timeouts

@pytest.mark.parametrize("status", [401, 403])
def test_cog_prediction_refusing_the_token(servers, sandbox, status):
    answer = lambda r: r.json({"detail": f"token {TOKEN} is not allowed"}, status)  # noqa: E731
    with cog(predict_server(servers, answer)) as client:
        err = expect(AuthError, lambda: client.run({"text": "hi"}), within=3)
    assert err.status == status and "token" in err.hint.lower()


@pytest.mark.parametrize("status", [401, 403])
def test_cog_wait_until_ready_refusing_the_token_says_so(servers, sandbox, status):
    """A health check refused for the token is not a model to wait for, nor one whose
    logs explain anything: the token is what to fix."""
    server = servers(cog_routes())
    server.route("/health-check", lambda r: r.json({"detail": "bad token"}, status), "GET")
    with cog(server) as client:
        assert client.health().state is HealthState.UNHEALTHY  # health() never raises
        err = expect(AuthError, lambda: client.wait_until_ready(2), within=2)
    assert err.status == status and "token" in err.hint.lower()


def test_cog_wait_until_ready_for_a_setup_that_never_ends(servers, sandbox):
    server = servers(cog_routes(health={"status": "STARTING",
                                        "setup": {"status": "starting"}}))
    with cog(server) as client:
        err = expect(ModelNotReady, lambda: client.wait_until_ready(1), within=1)
    assert "starting" in err.message and "longer" in err.hint


@pytest.mark.parametrize("body,kind", [
    # Cog 0.23's own answer while setup() runs (seen from a real server).
    ({"error": "Setup has not finished yet. Wait until it has finished, or GET "
               "/health-check for status.", "status": "failed"}, ModelNotReady),
    (None, ServerError),  # a bare 503 from a proxy in front of it
])
def test_cog_prediction_503(servers, sandbox, body, kind):
    answer = (lambda r: r.json(body, 503)) if body else (lambda r: r.raw(503, b""))
    with cog(predict_server(servers, answer)) as client:
        err = expect(kind, lambda: client.run({"text": "hi"}), within=3)
    assert "Wait" in err.hint if kind is ModelNotReady else "503" in err.message


def _runway_image_server(servers, location):
    meta = runway_meta(commands=[{"name": "f", "inputs": [], "outputs": [
        {"name": "image", "type": "image"}]}])
    routes = runway_routes(meta)
    routes[("POST", "/f")] = lambda r: r.json({"image": location(server)})
    server = servers(routes)
    return server


def _png_bytes(rgb=(10, 200, 30)) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (3, 2), rgb).save(buf, "PNG")
    return buf.getvalue()


def test_runway_url_output_on_another_origin_is_decoded_without_the_token(servers, sandbox):
    other = servers({("GET", "/o.png"): lambda r: r.raw(200, _png_bytes(),
                                                         content_type="image/png")})
    server = _runway_image_server(servers, lambda s: other.url + "/o.png")
    with runway(server) as client:
        client.spec()
        image = client.run({}, "f").outputs["image"]
    assert image.shape[:2] == (2, 3) and tuple(image[0, 0][:3]) == (10, 200, 30)
    assert len(other.log) == 1 and "authorization" not in other.log[0]["headers"]
    assert server.requests_to("/f")[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_runway_url_output_on_its_own_origin_gets_the_token(servers, sandbox):
    server = _runway_image_server(servers, lambda s: s.url + "/files/o.png")
    server.route("/files/o.png", lambda r: r.raw(200, _png_bytes((1, 2, 3)),
                                                 content_type="image/png"))
    with runway(server) as client:
        client.spec()
        image = client.run({}, "f").outputs["image"]
    assert tuple(image[0, 0][:3]) == (1, 2, 3)
    assert server.requests_to("/files/o.png")[0]["headers"]["authorization"] == \
        f"Bearer {TOKEN}"


def test_runway_url_output_that_is_missing(servers, sandbox):
    server = _runway_image_server(servers, lambda s: s.url + "/gone.png")
    with runway(server) as client:
        client.spec()
        expect(RunwayError, lambda: client.run({}, "f"), within=3)


def test_hosted_wake_up_that_never_ends_is_bounded(servers, sandbox):
    server = servers({("GET", "/v1/"): lambda r: r.json({"status": "starting"})})
    client = HostedRunwayClient(server.url, token=TOKEN, timeout=3)
    err = expect(ModelNotReady, lambda: client.wait_until_ready(1, first_delay=0.05), within=1)
    assert "did not wake up" in err.message
    assert server.requests_to("/v1/")[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_hosted_wake_up_cancelled(servers, sandbox):
    cancel = threading.Event()  # set by the first poll: cancelled while waiting
    server = servers({("GET", "/v1/"): the_cancel_once_here(
        cancel, lambda r: r.json({"status": "starting"}))})
    client = HostedRunwayClient(server.url, token=TOKEN, timeout=3)
    expect(Cancelled, lambda: client.wait_until_ready(30, cancel_event=cancel,
                                                      first_delay=0.05), within=1)
    assert server.requests_to("/v1/")


def test_replicate_403_names_the_model(servers, sandbox):
    server = servers()
    server.prefix("/v1", lambda r: r.json({"detail": "You do not have permission"}, 403))
    err = expect(AuthError, replicate(server).spec, within=3)
    assert err.status == 403 and "a/b" in err.message and "token" in err.hint.lower()


def test_replicate_deployment_without_a_release(servers, sandbox):
    server = servers({("GET", "/v1/deployments/a/d"): lambda r: r.json(
        {"owner": "a", "name": "d", "current_release": None})})
    client = ReplicateClient("deployment:a/d", token=TOKEN, base_url=server.url)
    err = expect(ServerError, client.spec, within=3)
    assert "no release" in err.message and "release" in err.hint


def test_replicate_api_that_never_answers_ends_at_the_timeout(servers, sandbox):
    server = servers()
    server.prefix("/v1", lambda r: r.hang())
    err = expect(TimedOut, replicate(server, request_timeout=1.5).spec, within=1.5)
    assert "Replicate" in err.message


def test_replicate_api_that_is_not_there(sandbox):
    client = ReplicateClient("a/b", token=TOKEN, base_url=f"http://127.0.0.1:{free_port()}",
                             timeout=3)
    err = expect(ConnectionFailed, client.spec, within=3)
    assert "Replicate" in err.message


@pytest.mark.parametrize("status", [401, 403])
def test_runway_wait_until_ready_refusing_the_token_says_so(servers, sandbox, status):
    routes = runway_routes()
    routes[("GET", "/healthcheck")] = lambda r: r.json({"error": "no"}, status)
    with runway(servers(routes)) as client:
        assert client.health().state is HealthState.UNHEALTHY  # health() never raises
        err = expect(AuthError, lambda: client.wait_until_ready(2), within=2)
    assert err.status == status and "token" in err.hint.lower()


@pytest.mark.docker
@pytest.mark.slow  # may build the test images first
def test_docker_container_killed_for_memory_fails_the_run_saying_so(docker_images, sandbox):
    """A run whose container the kernel kills for memory fails as RuntimeFailed naming
    memory, the limit and what to do (not the server's 'Worker crashed'), in bounded time,
    through the job queue every caller uses (Run panel, post-processing, job files)."""
    from runway_addon.core.jobs import Failure, Job, JobQueue, JobState, ModelRef, SessionPool
    from runway_addon.core.jobs.placement import Placement
    from tests.helpers import DOCKER_TEST_IMAGES

    pool = SessionPool(placement=Placement(runtime="DOCKER_CPU", mem_limit=200 << 20))
    queue = JobQueue(pool, workers=1)
    seen = {}

    def on_event(ev):
        if getattr(ev, "state", None) is JobState.RUNNING:
            seen.setdefault("running", time.monotonic())
        if isinstance(ev, Failure):
            seen.update(failure=ev, failed=time.monotonic())

    job = Job(ModelRef("image", DOCKER_TEST_IMAGES["memhog"]), {"megabytes": 1024}, timeout=20)
    try:
        [handle] = queue.run_blocking([job], on_event=on_event, timeout=180)
    finally:
        pool.stop_all()
    failure = seen["failure"]
    assert handle.state is JobState.FAILED and failure.error_type == "RuntimeFailed"
    assert failure.kind == "container-memory"
    assert "ran out of memory (limit 200 MB)" in failure.message
    assert "memory" in failure.hint and "Worker crashed" in failure.details
    assert seen["failed"] - seen["running"] <= job.timeout + MARGIN
