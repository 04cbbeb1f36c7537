"""A small client for any OpenAI-compatible chat endpoint (`POST {base}/chat/completions`).

Standard library only (urllib), thread-safe, reusable (augmentation, LLM judges).
Retries 429 (honouring Retry-After), 5xx, timeouts, dropped connections and malformed
replies with jittered exponential backoff. The API key is read from the environment,
sent only in the Authorization header, and never appears in a repr, log line or error.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

log = logging.getLogger(__name__)


class ChatError(Exception):
  """A request that did not produce a usable reply."""


class ChatFailed(ChatError):
  """This request failed (retries exhausted, or a 4xx about the request itself)."""


class EndpointError(ChatError):
  """The endpoint cannot serve any request (unreachable, bad key, unknown model/path)."""


@dataclasses.dataclass(frozen=True)
class ChatReply:
  text: str
  prompt_tokens: int
  completion_tokens: int
  attempts: int  # HTTP requests this reply took (1 = no retry)


class ChatClient:
  """`chat(messages) -> ChatReply` against `{base_url}/chat/completions`."""

  def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
               timeout: float = 120.0, max_retries: int = 6, backoff: float = 1.0,
               max_backoff: float = 60.0, temperature: float = 0.0,
               max_tokens: int | None = None, seed: int | None = None):
    if not base_url.startswith(("http://", "https://")):
      raise ValueError(f"endpoint base URL must start with http:// or https://, got {base_url!r}")
    self.url = base_url.rstrip("/") + "/chat/completions"
    self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
    # The key lives only in this private attribute; repr and errors never include it.
    self._api_key = os.environ.get(api_key_env) or None
    if not self._api_key:
      log.info("$%s is not set: requests go without an Authorization header", api_key_env)
    self.timeout, self.max_retries = timeout, max_retries
    self.backoff, self.max_backoff = backoff, max_backoff
    self.params: dict[str, Any] = {"temperature": temperature}
    if max_tokens:
      self.params["max_tokens"] = max_tokens
    if seed is not None:
      self.params["seed"] = seed
    self._random = random.Random()

  def __repr__(self) -> str:
    key = f"${self.api_key_env}" + ("" if self._api_key else " (unset)")
    return f"ChatClient(url={self.url!r}, model={self.model!r}, key={key})"

  def chat(self, messages: Sequence[dict[str, str]], **params) -> ChatReply:
    body = json.dumps({"model": self.model, "messages": list(messages),
                       **self.params, **params}).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if self._api_key:
      headers["Authorization"] = f"Bearer {self._api_key}"
    problem = ""
    for attempt in range(self.max_retries + 1):
      if attempt:
        time.sleep(self._delay(attempt, retry_after))
      retry_after = None
      request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
      try:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
          raw = response.read()
      except urllib.error.HTTPError as e:
        detail = _excerpt(e.read())
        if e.code == 429 or e.code >= 500:
          retry_after = _retry_after(e.headers.get("Retry-After"))
          problem = f"HTTP {e.code} {detail}"
        elif e.code in (401, 403, 404):
          raise EndpointError(f"{self.url}: HTTP {e.code} {detail} (check the base URL, "
                              f"model {self.model!r} and ${self.api_key_env})") from None
        else:
          raise ChatFailed(f"HTTP {e.code} {detail}") from None
      except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
              socket.timeout, TimeoutError) as e:
        reason = getattr(e, "reason", e)  # URLError wraps the socket error
        if isinstance(reason, (socket.timeout, TimeoutError)):
          problem = f"timeout after {self.timeout:g}s"
        elif isinstance(e, urllib.error.URLError):  # no connection at all (refused, DNS)
          problem = f"cannot connect: {reason}"
          if attempt == self.max_retries:
            raise EndpointError(f"{self.url} unreachable after {attempt + 1} attempts: "
                                f"{problem}") from None
        else:  # the connection dropped mid-request
          problem = f"connection dropped: {e!r}"
      else:
        try:
          return self._parse(raw, attempt + 1)
        except ValueError as e:
          problem = f"malformed reply: {e}"
      log.debug("chat attempt %d/%d: %s", attempt + 1, self.max_retries + 1, problem)
    raise ChatFailed(f"gave up after {self.max_retries + 1} attempts: {problem}")

  def _delay(self, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
      return min(retry_after, self.max_backoff)
    # Exponential backoff with jitter, so many workers do not retry in lockstep.
    return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * self._random.uniform(0.5, 1.0)

  @staticmethod
  def _parse(raw: bytes, attempts: int) -> ChatReply:
    try:
      payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
      raise ValueError(f"not JSON: {_excerpt(raw)}") from None
    try:
      text = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
      raise ValueError(f"no choices[0].message.content in {_excerpt(raw)}") from None
    if not isinstance(text, str):
      raise ValueError(f"message content is {type(text).__name__}, not text")
    usage = payload.get("usage") or {}
    return ChatReply(text, int(usage.get("prompt_tokens") or 0),
                     int(usage.get("completion_tokens") or 0), attempts)


def _retry_after(value: str | None) -> float | None:
  """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
  if not value:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    when = email.utils.parsedate_to_datetime(value)
    return max(0.0, when.timestamp() - time.time()) if when else None


def _excerpt(raw: bytes, limit: int = 200) -> str:
  text = raw.decode("utf-8", "replace").strip()
  return repr(text[:limit] + ("..." if len(text) > limit else ""))
