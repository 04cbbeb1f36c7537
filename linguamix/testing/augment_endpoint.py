"""A real HTTP server on loopback that speaks the OpenAI chat-completions API, for tests.

It "translates" an item by writing a fixed sentence in the target language followed
by every code block, inline code, URL and number of the field, and misbehaves on
purpose when an item's id asks for it:

  r429      first request: 429 with Retry-After: 0
  r500      first request: 500
  slow      first request: answers only after `slow_seconds` (the client times out)
  hangup    first request: the connection closes without an answer
  junk      first request: a body that is not JSON
  nochoice  first request: JSON without `choices`
  dropnum   first attempt drops the numbers (rejected; the retry carries the reason)
  badlang   always answers in English (rejected twice -> rejects file)
  garbage   every request: a body that is not JSON (the item fails)
"""

from __future__ import annotations

import collections
import http.server
import json
import re
import threading
import time

SENTENCES = {
    "de": "Dies ist eine sorgfältige Übersetzung der Aufgabe, die alle wichtigen Teile in "
          "deutscher Sprache wiedergibt.",
    "fr": "Ceci est une traduction soignée de la tâche, qui rend toutes les parties "
          "importantes en langue française.",
    "sw": "Hii ni tafsiri makini ya kazi hii, inayoeleza sehemu zote muhimu kwa lugha ya "
          "Kiswahili.",
    "en": "This is the original English text of the task, with every important part kept "
          "in the English language.",
}
# Independent of linguamix.augment.validate: one left-to-right alternation.
SPAN_RE = re.compile(r"```.*?```|`[^`\n]+`|https?://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]"
                     r"|(?<![0-9])[0-9]+(?:[.,][0-9]+)*", re.DOTALL)
NUMBER_RE = re.compile(r"^[0-9]+(?:[.,][0-9]+)*$")


def field_spans(text: str) -> list[str]:
  return SPAN_RE.findall(text)


class FakeChatEndpoint:
  """`with FakeChatEndpoint(key) as ep:` -> ep.base_url; ep.calls counts requests per (id, lang)."""

  def __init__(self, key: str, *, delay: float = 0.0, slow_seconds: float = 1.5):
    self.key, self.delay, self.slow_seconds = key, delay, slow_seconds
    self.calls: collections.Counter = collections.Counter()
    self.retry_reasons: dict[tuple[str, str], str] = {}
    self.auth_ok = 0
    self.lock = threading.Lock()
    endpoint = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):  # keep test output quiet
        pass

      def do_POST(self):  # noqa: N802
        endpoint.handle(self)

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.server.daemon_threads = True
    self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

  def __enter__(self):
    threading.Thread(target=self.server.serve_forever, daemon=True).start()
    return self

  def __exit__(self, *exc):
    self.server.shutdown()
    self.server.server_close()

  @property
  def total(self) -> int:
    return sum(self.calls.values())

  def _send(self, handler, status: int, body: bytes, headers=()):
    try:
      handler.send_response(status)
      for name, value in headers:
        handler.send_header(name, value)
      handler.send_header("Content-Length", str(len(body)))
      handler.end_headers()
      handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
      pass

  def handle(self, handler):
    body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
    if handler.path != "/v1/chat/completions":
      return self._send(handler, 404, b'{"error": "not found"}')
    if handler.headers.get("Authorization") != f"Bearer {self.key}":
      return self._send(handler, 401, b'{"error": {"message": "invalid api key"}}')
    messages = body["messages"]
    lang = re.search(r"\((\w\w)\)", messages[0]["content"]).group(1)
    item = json.loads(messages[1]["content"])
    item_id = _id_of(item)
    retry = len(messages) > 2
    with self.lock:
      self.auth_ok += 1
      self.calls[item_id, lang] += 1
      n = self.calls[item_id, lang]
      if retry:
        self.retry_reasons[item_id, lang] = messages[-1]["content"]
    if self.delay:
      time.sleep(self.delay)
    first = n == 1
    if "r429" in item_id and first:
      return self._send(handler, 429, b'{"error": "rate limited"}', [("Retry-After", "0")])
    if "r500" in item_id and first:
      return self._send(handler, 500, b'{"error": "internal"}')
    if "slow" in item_id and first:
      time.sleep(self.slow_seconds)
    if "hangup" in item_id and first:
      handler.close_connection = True  # no status line: the client sees the connection drop
      return None
    if ("junk" in item_id and first) or "garbage" in item_id:
      return self._send(handler, 200, b"<html>upstream proxy error</html>")
    if "nochoice" in item_id and first:
      return self._send(handler, 200, b'{"object": "chat.completion"}')
    target = "en" if "badlang" in item_id else lang
    keep_numbers = not ("dropnum" in item_id and not retry)
    out = {}
    for field in ("system_prompt", "question", "response"):
      if not item[field]:
        out[field] = ""
        continue
      spans = [s for s in field_spans(item[field]) if keep_numbers or not NUMBER_RE.match(s)]
      out[field] = " ".join([SENTENCES[target]] + spans)
    content = json.dumps(out, ensure_ascii=False)
    reply = {"object": "chat.completion", "model": body["model"],
             "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": len(json.dumps(messages)) // 4,
                       "completion_tokens": len(content) // 4}}
    self._send(handler, 200, json.dumps(reply).encode(), [("Content-Type", "application/json")])


def _id_of(item):
  # The prompt sends the Orca fields only; the question starts with "[id] " in test data.
  match = re.match(r"\[([^\]]+)\]", item["question"])
  return match.group(1) if match else "?"
