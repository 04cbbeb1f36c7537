"""A real OpenAI-compatible HTTP server on loopback that plays an MT-Bench judge and
records every request body, for the judge tests.

Its reply depends only on the request's messages, so two clients that send the same
messages get the same judgements: a single-grading prompt is rated `Rating: [[r]]` with
r from the content's hash, sometimes as `[r]` (FastChat's fallback pattern), sometimes
with a decimal, and sometimes with no rating at all; a pairwise prompt gets `[[A]]`,
`[[B]]`, `[[C]]` or no verdict the same way.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading


def send_json(handler: http.server.BaseHTTPRequestHandler, payload: bytes) -> None:
  """Answers a request with `payload`, a JSON body, status 200."""
  handler.send_response(200)
  handler.send_header("Content-Type", "application/json")
  handler.send_header("Content-Length", str(len(payload)))
  handler.end_headers()
  handler.wfile.write(payload)


def reply_for(messages) -> str:
  text = json.dumps(messages, ensure_ascii=False)
  h = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
  pairwise = "[[A]]" in text and "[[B]]" in text
  if pairwise:
    return ["Assistant A is clearer. [[A]]", "B follows the instruction. [[B]]",
            "Both are equal. [[C]]", "I cannot decide."][h % 4]
  rating = 1 + h % 10
  return [f"Good explanation. Rating: [[{rating}]]", f"Rating: [{rating}]",
          f"Rating: [[{rating}.5]]", "The answer is hard to judge; no rating."][(h >> 8) % 4]


class RecordingJudge:
  """`with RecordingJudge() as judge:` -> judge.base_url (…/v1); judge.bodies in order."""

  def __init__(self):
    self.bodies: list[dict] = []
    self.lock = threading.Lock()
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        with server.lock:
          server.bodies.append(body)
        payload = json.dumps({
            "id": f"chatcmpl-{len(server.bodies)}", "object": "chat.completion", "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply_for(body["messages"])}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        send_json(self, payload)

    self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

  def __enter__(self):
    threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
    return self

  def __exit__(self, *exc):
    self._httpd.shutdown()
    self._httpd.server_close()

  def take(self) -> list[dict]:
    with self.lock:
      bodies, self.bodies = self.bodies, []
    return bodies
