"""Every family table; importing this package registers their architectures (one line each)."""

# ruff: noqa: F401
from linguamix.models.hf.families import bloom
from linguamix.models.hf.families import gemma2
from linguamix.models.hf.families import gpt2
from linguamix.models.hf.families import gpt_neox
from linguamix.models.hf.families import llama
from linguamix.models.hf.families import mixtral
from linguamix.models.hf.families import phi3
from linguamix.models.hf.families import qwen3
from linguamix.models.hf.families import t5
