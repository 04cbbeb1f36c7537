"""Selective Translated Augmentation (sPhinX; docs/augmentation.md): `linguamix augment`.

Library: `ChatClient` (any OpenAI-compatible chat endpoint, reusable), `augment()`
(sample, translate, validate, cache, write), `register_tasks()` (SeqIO tasks over the
output). The prompt lives in `linguamix.augment.prompt` (versioned).
"""

from linguamix.augment.client import (
    ChatClient, ChatError, ChatFailed, ChatReply, EndpointError)
from linguamix.augment.prompt import PROMPT_VERSION
from linguamix.augment.run import (
    augment, read_orca_jsonl, read_task, register_tasks, sample_subsets)
from linguamix.augment.validate import Checks
