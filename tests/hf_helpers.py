"""Shared by the tests that compare decoder families with transformers on tiny checkpoints."""

import jax.numpy as jnp
import numpy as np
import torch


def randomize(model, scale=0.3):
  """Every parameter N(0, scale): HF inits biases and norms to constants, so random values
  test their mapping too."""
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * scale)
  return model


def random_ids(vocab, b=2, length=12, seed=0):
  return np.random.default_rng(seed).integers(3, vocab, size=(b, length))


def hf_logits(hf_model, ids):
  with torch.no_grad():
    return hf_model(torch.as_tensor(ids)).logits.numpy()


def lm_batch(ids):
  """A plain-LM batch of `ids`, the loss on positions 3 onwards."""
  return {"decoder_input_tokens": jnp.asarray(ids[:, :-1]), "decoder_target_tokens": jnp.asarray(ids[:, 1:]),
          "decoder_loss_weights": jnp.asarray((np.arange(ids.shape[1] - 1) >= 3)[None].repeat(len(ids), 0),
                                              jnp.float32)}
