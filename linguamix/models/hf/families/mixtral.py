"""Mixtral (MixtralForCausalLM): Mistral's attention with a sparse mixture-of-experts MLP.

Each layer's `block_sparse_moe` holds a router `gate` [E, D] and E SwiGLU experts
(`w1` gate, `w3` up, `w2` down), one tensor per expert: the names transformers 5's
`save_pretrained` writes (it fuses them into `mlp.experts.gate_up_proj` / `down_proj`
in memory only). They stack onto our [E, ...] expert kernels (`decoder_mlp.MoeMlp`).
"""

from __future__ import annotations

from linguamix.models.hf import architectures
from linguamix.models.hf.families import llama
from linguamix.models.hf.tensors import entry, linear, stacked

# transformers' MixtralConfig default, written when the model trains without the aux loss
_HF_AUX_COEF = 0.001


def _experts():
  """HF per-expert Linear weights stacked [E, out, in] <-> our expert kernel [E, in, out]."""
  return (lambda w: [w.transpose(0, 2, 1)], lambda ks: ks[0].transpose(0, 2, 1))


def layer_entries(cfg) -> list:
  # attention and norms as Llama's; its dense MLP is replaced by the experts
  entries = [e for e in llama.layer_entries(cfg) if not e.hf_name.startswith("mlp.")]
  entries.append(entry("block_sparse_moe.gate.weight", ("mlp", "router", "kernel"), linear()))
  for proj, ours in (("w1", "wi_0"), ("w3", "wi_1"), ("w2", "wo")):
    entries.append(stacked(f"block_sparse_moe.experts.{{}}.{proj}.weight", cfg.num_experts,
                           ("mlp", ours), _experts()))
  return entries


def _mixtral(hf):
  # transformers adds router_aux_loss_coef x aux_loss to the loss only with output_router_logits
  coef = float(hf.get("router_aux_loss_coef", _HF_AUX_COEF))
  coef = coef if hf.get("output_router_logits") else 0.0
  return dict(llama.base_fields(hf), sliding_window=hf.get("sliding_window"),
              num_experts=hf["num_local_experts"], experts_per_token=hf.get("num_experts_per_tok", 2),
              router_aux_loss_coef=coef, router_jitter_noise=float(hf.get("router_jitter_noise", 0.0)))


def _mixtral_to_hf(cfg):
  return dict(llama.base_to_hf(cfg), sliding_window=cfg.sliding_window, num_local_experts=cfg.num_experts,
              num_experts_per_tok=cfg.experts_per_token, output_router_logits=cfg.router_aux_loss_coef > 0,
              router_aux_loss_coef=cfg.router_aux_loss_coef or _HF_AUX_COEF,
              router_jitter_noise=cfg.router_jitter_noise)


architectures.register(architectures.Architecture(
    "MixtralForCausalLM", "mixtral", "MixtralConfig", _mixtral, _mixtral_to_hf,
    layer_entries=layer_entries, top_entries=llama.top_entries,
    peft=True))  # LoRA on the attention projections (MoeMlp refuses adapters on experts)
