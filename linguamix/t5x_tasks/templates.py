"""Byte-exact prompt templates (docs/data.md): record -> (inputs, targets) text.

A record is the canonical dict the readers produce: `instruction`, `input`, `output`,
`system` (may be empty) and `history` (earlier (user, assistant) turns). The prompt
becomes `inputs` (mT5 encoder input / decoder prefix) and the response `targets`;
for decoder models the feature converter concatenates them and masks the prompt out
of the loss, so inputs + targets is the full byte-exact text.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import gin

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
BACTRIAN_WITH_INPUT = "### Input:\n{instruction}\n\n{input}\n\n### Output:\n"
BACTRIAN_NO_INPUT = "### Input:\n{instruction}\n\n### Output:\n"
# OpenGPT-X chat: `System: {system}\nUser: {msg}\nAssistant: {msg}</s>`, turns joined
# by `\n`. `</s>` is the EOS token: the targets feature appends it (add_eos=True), so
# the targets text stops before it; `render_chat` writes the full string.
CHAT_EOS = "</s>"


def _fill(template: str, rec: Mapping[str, str]) -> str:
  # str.replace, not str.format: user text may contain braces.
  out = template
  for key in ("instruction", "input"):
    out = out.replace("{" + key + "}", rec.get(key, ""))
  return out


def alpaca(rec) -> tuple[str, str]:
  tmpl = ALPACA_WITH_INPUT if rec.get("input") else ALPACA_NO_INPUT
  return _fill(tmpl, rec), rec["output"]


def bactrian(rec) -> tuple[str, str]:
  tmpl = BACTRIAN_WITH_INPUT if rec.get("input") else BACTRIAN_NO_INPUT
  return _fill(tmpl, rec), rec["output"]


def bactrian_seq2seq(rec) -> tuple[str, str]:
  prompt = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
  return prompt, rec["output"]


def _user_message(rec) -> str:
  return rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")


def opengptx_chat(rec) -> tuple[str, str]:
  """Prompt = system line, earlier turns, last user turn and `Assistant: `."""
  lines = [f"System: {rec['system']}"] if rec.get("system") else []
  for user, assistant in rec.get("history", ()):
    lines += [f"User: {user}", f"Assistant: {assistant}{CHAT_EOS}"]
  lines += [f"User: {_user_message(rec)}", "Assistant: "]
  return "\n".join(lines), rec["output"]


def render_chat(rec) -> str:
  """The full OpenGPT-X chat string of a record, `</s>` included."""
  inputs, targets = opengptx_chat(rec)
  return inputs + targets + CHAT_EOS


TEMPLATES: dict[str, Callable[[Mapping], tuple[str, str]]] = {
    "alpaca": alpaca,
    "bactrian": bactrian,
    "bactrian_seq2seq": bactrian_seq2seq,
    "opengptx_chat": opengptx_chat,
}


# Templates that render a record's `history` (earlier turns) in their own format.
MULTI_TURN = (opengptx_chat,)


def conversation_prompt(template: Callable[[Mapping], tuple[str, str]], turns: Sequence[str],
                        answers: Sequence[str]) -> str:
  """The prompt for the last of `turns`, the earlier ones answered by `answers` (the
  model's own). A chat template shows the history its way; a single-turn template
  (Alpaca, Bactrian) is repeated: each earlier prompt, its answer, a blank line."""
  if len(answers) != len(turns) - 1:
    raise ValueError(f"{len(turns)} turns need {len(turns) - 1} earlier answers, got {len(answers)}")
  record = lambda text, history=(): {"instruction": text, "input": "", "output": "",
                                     "system": "", "history": history}
  if template in MULTI_TURN:
    return template(record(turns[-1], tuple(zip(turns[:-1], answers))))[0]
  return "".join(template(record(t))[0] + a + "\n\n" for t, a in zip(turns, answers)) + \
      template(record(turns[-1]))[0]


@gin.configurable(module="linguamix.t5x_tasks")
def family_template(family: str, default: str, overrides: Mapping[str, str] | None = None):
  """The template a task family uses; gin: `family_template.overrides = {'bactrian_x': 'bactrian_seq2seq'}`.

  Resolved when data is read, so a binding parsed after import applies.
  """
  name = (overrides or {}).get(family, default)
  if name not in TEMPLATES:
    raise ValueError(f"unknown template {name!r} for task family {family!r}; "
                     f"known: {sorted(TEMPLATES)}")
  return TEMPLATES[name]
