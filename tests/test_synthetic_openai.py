"""The OpenAI-compatible client against a scripted HTTP server on 127.0.0.1 (no other network)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import read_output, write_jsonl
from thresher.pipeline.synthetic.openai import OpenAIClient, OpenAIError, OpenAIGenerator
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


class Server:
    """Answers each POST with the next scripted action (the last one repeats):
    ("ok", None) echoes the prompt, ("status", code[, retry_after]), ("sleep", seconds),
    ("malformed", None), ("no_choices", None)."""

    def __init__(self):
        self.script: list[tuple] = [("ok", None)]
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "auth": self.headers.get("Authorization")})
                    action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                finally:
                    # out of flight before the response is written: the client may send its next
                    # request as soon as it has read this one's, before this thread runs again
                    with server.lock:
                        server.in_flight -= 1
                self.respond(action, body)

            def respond(self, action, body):
                kind, arg = action[0], action[1]
                if kind == "sleep":
                    time.sleep(arg)
                    kind = "ok"
                if kind == "status":
                    self.send_response(arg)
                    if len(action) > 2:
                        self.send_header("Retry-After", str(action[2]))
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "scripted"}}')
                    return
                if kind == "malformed":
                    payload = b'{"choices": [ this is not json'
                elif kind == "no_choices":
                    payload = b'{"object": "chat.completion", "choices": []}'
                else:
                    if "messages" in body:
                        prompt = body["messages"][-1]["content"]
                        payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                                       "content": f"echo: {prompt} #{body.get('seed')}"}}]}).encode()
                    else:
                        payload = json.dumps({"choices": [{"text": f"text: {body['prompt']}"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with Server() as s:
        yield s


def client(server, tmp_path=None, **kwargs):
    sleeps = []
    defaults = dict(api_key_env="THRESHER_TEST_KEY", max_retries=3, backoff=0.5, timeout=5,
                    cache_dir=str(tmp_path / "cache") if tmp_path else None, sleep=sleeps.append)
    defaults.update(kwargs)
    c = OpenAIClient(server.url, "test-model", **defaults)
    c.sleeps = sleeps
    return c


def test_success_chat_and_completions_with_key_from_env(server, monkeypatch):
    monkeypatch.setenv("THRESHER_TEST_KEY", "sk-test-123")
    c = client(server, system="be brief", temperature=0.3, max_tokens=20)
    assert c.complete("hello", seed=7) == "echo: hello #7"
    request = server.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test-123"
    assert request["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert request["body"]["model"] == "test-model" and request["body"]["max_tokens"] == 20
    assert request["body"]["temperature"] == 0.3
    text = client(server, endpoint="completions").complete("plain")
    assert text == "text: plain" and server.requests[-1]["path"] == "/v1/completions"
    monkeypatch.delenv("THRESHER_TEST_KEY")
    client(server).complete("no key")
    assert server.requests[-1]["auth"] is None


def test_429_and_500_are_retried_with_backoff(server):
    server.script = [("status", 429), ("status", 500), ("status", 503, 2), ("ok", None)]
    c = client(server)
    assert c.complete("retry me") == "echo: retry me #None"
    assert len(server.requests) == 4 and c.retries == 3
    assert 0.25 <= c.sleeps[0] <= 0.5 and 0.5 <= c.sleeps[1] <= 1.0  # backoff * 2**attempt, jittered
    assert c.sleeps[2] == 2.0  # Retry-After wins


def test_retries_run_out(server):
    server.script = [("status", 500)]
    c = client(server, max_retries=2)
    with pytest.raises(OpenAIError, match="gave up after 3 attempts: HTTP 500"):
        c.complete("x")
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(server):
    server.script = [("status", 400)]
    c = client(server)
    with pytest.raises(OpenAIError, match="HTTP 400.*scripted"):
        c.complete("x")
    assert len(server.requests) == 1 and c.sleeps == []


def test_timeout(server):
    server.script = [("sleep", 1.0)]
    c = client(server, timeout=0.2, max_retries=1)
    start = time.perf_counter()
    with pytest.raises(OpenAIError, match="timed out after 0.2s"):
        c.complete("slow")
    assert time.perf_counter() - start < 1.5
    assert len(server.requests) == 2
    server.script = [("sleep", 1.0), ("ok", None)]
    assert client(server, timeout=0.2).complete("then fast") == "echo: then fast #None"


def test_malformed_json_and_missing_choices(server):
    server.script = [("malformed", None)]
    with pytest.raises(OpenAIError, match="malformed response.*not JSON"):
        client(server, max_retries=1).complete("x")
    server.script = [("no_choices", None)]
    with pytest.raises(OpenAIError, match="malformed response.*choices"):
        client(server, max_retries=0).complete("x")
    server.script = [("malformed", None), ("ok", None)]
    assert client(server).complete("recovers") == "echo: recovers #None"


def test_unreachable_server_is_an_error():
    c = OpenAIClient("http://127.0.0.1:9/v1", "m", max_retries=1, sleep=lambda s: None, timeout=2)
    with pytest.raises(OpenAIError, match="cannot reach|connection"):
        c.complete("x")


def test_cache_hit_sends_no_second_request(server, tmp_path):
    first = client(server, tmp_path)
    assert first.complete_many([("a", 1), ("b", 2), ("a", 1)]) == ["echo: a #1", "echo: b #2", "echo: a #1"]
    sent = len(server.requests)
    assert sent in (2, 3)  # the repeated request may race its twin; never more
    again = client(server, tmp_path)
    assert again.complete_many([("a", 1), ("b", 2)]) == ["echo: a #1", "echo: b #2"]
    assert len(server.requests) == sent and again.cache_hits == 2 and again.requests_sent == 0
    client(server, tmp_path, temperature=0.1).complete("a", 1)  # other parameters: another key
    assert len(server.requests) == sent + 1
    assert list((tmp_path / "cache").rglob("*.tmp*")) == []


def test_failures_are_not_cached(server, tmp_path):
    server.script = [("status", 400), ("ok", None)]
    with pytest.raises(OpenAIError):
        client(server, tmp_path).complete("x")
    assert client(server, tmp_path).complete("x") == "echo: x #None"


def test_concurrency_is_bounded(server):
    server.delay = 0.05
    c = client(server, concurrency=3)
    out = c.complete_many([(f"p{i}", i) for i in range(15)])
    assert out == [f"echo: p{i} #{i}" for i in range(15)]
    assert 2 <= server.max_in_flight <= 3


def test_generator_skip_and_fail(server):
    server.script = [("status", 400)]
    gen = OpenAIGenerator(client(server), ["x", "y"], seed=1, on_error="skip")
    assert gen.generate([0, 1]) == [None, None] and gen.failed == 2
    with pytest.raises(OpenAIError):
        OpenAIGenerator(client(server), ["x"], seed=1).generate([0])


def test_openai_stage_in_the_pipeline_pays_once(server, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": "r0", "text": "real"}])
    stage = {"name": "synthetic", "generator": "openai", "count": 10, "seed": 4, "shards": 3,
             "openai": {"base_url": server.url, "model": "test-model", "prompts": ["tell a story", "list facts"],
                        "api_key_env": None, "concurrency": 2, "max_retries": 1, "backoff": 0}}

    def run(out):
        config = validate_config({"input": {"paths": [str(tmp_path / "in.jsonl")]}, "output": str(tmp_path / out),
                                  "runner": IN_MEMORY, "stages": [stage]})
        return run_pipeline(config)

    result = run("out")
    generated = sorted((d for d in read_output(tmp_path / "out", "kept") if d["source"] == "synthetic/openai"),
                       key=lambda d: d["meta"]["synthetic_index"])
    assert [d["id"] for d in generated] == [f"synthetic/openai/4/{n}" for n in range(10)]
    assert [d["meta"]["prompt"] for d in generated] == ["tell a story", "list facts"] * 5
    assert all(d["text"].startswith("echo: " + d["meta"]["prompt"]) for d in generated)
    assert len({d["text"] for d in generated}) == 10  # per-example seeds
    assert len(server.requests) == 10
    assert result.stats["stages"][0]["counts"]["requests_sent"] == 10 and result.accounted
    assert list((tmp_path / "out" / "synthetic_cache" / "openai").rglob("*.json"))

    result = run("out")  # same OUT: the cache there answers everything
    assert len(server.requests) == 10
    assert result.stats["stages"][0]["counts"]["cache_hits"] == 10
    again = {d["id"]: d["text"] for d in read_output(tmp_path / "out", "kept")}
    assert {d["id"]: d["text"] for d in generated}.items() <= again.items()
