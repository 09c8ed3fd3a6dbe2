"""The ``openai`` generator: any OpenAI-compatible HTTP endpoint through ``OpenAIClient`` (bounded
concurrency, retries with exponential backoff, timeouts, an on-disk cache keyed by a hash of the
request, the API key from an environment variable only). Example ``n`` maps to the same request
whatever batch or worker it lands in."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence

from thresher.filters import storage
from thresher.filters.augment_ops import stable_seed
from thresher.pipeline.synthetic.base import Generated


class OpenAIError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status)."""


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIClient:
    """Chat or text completions from an OpenAI-compatible server.

    Retries 408/409/425/429/5xx, time-outs, dropped connections and malformed responses up to
    ``max_retries`` times with exponential backoff (``backoff * 2**attempt``, capped at
    ``max_backoff``, jittered; a ``Retry-After`` header wins when shorter than the cap). Other
    4xx answers fail at once. Successful results are cached on disk under a sha256 of the request
    body and URL, so a re-run sends nothing it already has an answer for.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 endpoint: str = "chat", system: str | None = None, temperature: float = 0.7,
                 top_p: float = 1.0, max_tokens: int = 256, concurrency: int = 4, max_retries: int = 5,
                 backoff: float = 1.0, max_backoff: float = 60.0, timeout: float = 60.0,
                 cache_dir: str | None = None, extra_body: dict | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be chat or completions, got {endpoint!r}")
        self.url = base_url.rstrip("/") + ("/chat/completions" if endpoint == "chat" else "/completions")
        self.model, self.endpoint, self.system = model, endpoint, system
        self.params = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, **(extra_body or {})}
        self.api_key_env = api_key_env
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff, self.max_backoff, self.timeout = backoff, max_backoff, timeout
        self.cache_dir = cache_dir or None  # a directory path or URL (gs://, s3://)
        self.sleep = sleep
        self.requests_sent = 0
        self.cache_hits = 0
        self.retries = 0

    def body(self, prompt: str, seed: int | None) -> dict:
        body: dict[str, Any] = {"model": self.model, **self.params}
        if self.endpoint == "chat":
            messages = ([{"role": "system", "content": self.system}] if self.system else [])
            body["messages"] = messages + [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if seed is not None:
            body["seed"] = seed
        return body

    def cache_key(self, body: dict) -> str:
        return hashlib.sha256(json.dumps({"url": self.url, "body": body}, sort_keys=True).encode()).hexdigest()

    def _cache_path(self, key: str) -> str | None:
        return storage.join(self.cache_dir, key[:2], f"{key}.json") if self.cache_dir else None

    def complete(self, prompt: str, seed: int | None = None) -> str:
        body = self.body(prompt, seed)
        key = self.cache_key(body)
        path = self._cache_path(key)
        if path is not None and storage.isfile(path):
            try:
                self.cache_hits += 1
                return json.loads(storage.read_bytes(path))["text"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                self.cache_hits -= 1  # a damaged entry: ask again and overwrite it
        text = self._request(body)
        if path is not None:
            storage.atomic_write(path, json.dumps({"request": body, "text": text}, ensure_ascii=False).encode("utf-8"))
        return text

    def complete_many(self, requests: Sequence[tuple[str, int | None]]) -> list[str]:
        """Completions of (prompt, seed) pairs, in order, at most ``concurrency`` in flight."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda r: self.complete(*r), requests))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
        if retry_after:
            try:
                delay = min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        self.retries += 1
        self.sleep(delay)

    def _request(self, body: dict) -> str:
        data = json.dumps(body).encode()
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            retry_after = None
            self.requests_sent += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return self._parse(raw)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last_error = f"HTTP {exc.code} from {self.url}: {detail}"
                if exc.code not in RETRYABLE_STATUS:
                    raise OpenAIError(last_error) from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
            except (socket.timeout, TimeoutError):
                last_error = f"timed out after {self.timeout}s waiting for {self.url}"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                    last_error = f"timed out after {self.timeout}s waiting for {self.url}"
                else:
                    last_error = f"cannot reach {self.url}: {exc.reason}"
            except (ConnectionError, OSError) as exc:
                last_error = f"connection to {self.url} failed: {exc}"
            except _Malformed as exc:
                last_error = f"malformed response from {self.url}: {exc}"
            if attempt < self.max_retries:
                self._wait(attempt, retry_after)
        raise OpenAIError(f"gave up after {self.max_retries + 1} attempts: {last_error}")

    def _parse(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Malformed(f"not JSON ({exc}): {raw[:120]!r}") from None
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise _Malformed(f"no choices[0].{'message.content' if self.endpoint == 'chat' else 'text'} "
                             f"in {str(data)[:120]}") from None
        if not isinstance(text, str):
            raise _Malformed(f"completion is {type(text).__name__}, not a string")
        return text


class _Malformed(Exception):
    pass


class OpenAIGenerator:
    """Example ``n``: prompt ``n mod len(prompts)``, request seed from (seed, n). With ``on_error:
    skip`` a prompt that fails for good yields no document (``failed`` counts it)."""

    name = "openai"

    def __init__(self, client: OpenAIClient, prompts: Sequence[str], seed: int, on_error: str = "fail"):
        self.client = client
        self.prompts = list(prompts)
        self.seed = seed
        self.on_error = on_error
        self.failed = 0
        self._lock = threading.Lock()

    def generate(self, indices: Sequence[int]) -> list[Generated | None]:
        def one(n: int) -> Generated | None:
            prompt = self.prompts[n % len(self.prompts)]
            try:
                text = self.client.complete(prompt, stable_seed(self.seed, "openai", n) % 2**31)
            except OpenAIError:
                if self.on_error == "skip":
                    with self._lock:
                        self.failed += 1
                    return None
                raise
            return Generated(text.strip(), {"prompt": prompt, "prompt_index": n % len(self.prompts),
                                            "model": self.client.model})

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.client.concurrency)) as pool:
            return list(pool.map(one, indices))
