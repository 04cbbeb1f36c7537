"""The parameter count behind MFU (6 x N x tokens): a tied output layer is the same matmul
as an untied one, so tying must not change N, and embedding lookups stay out of it."""

import flax.linen as nn
import jax
import numpy as np
import pytest
import seqio

from linguamix.models import decoder, mt5
from linguamix.models.encoder_decoder import EncoderDecoderModel

VOCAB = 64
VOCABULARY = seqio.PassThroughVocabulary(VOCAB, eos_id=1)


def _decoder(tie):
  cfg = decoder.DecoderConfig(vocab_size=VOCAB, d_model=32, num_layers=2, num_heads=4,
                              mlp_dim=64, tie_embeddings=tie)
  return decoder.DecoderOnlyModel(cfg, VOCABULARY), {"decoder_input_tokens": (1, 8)}


def _mt5(tie):
  cfg = mt5.MT5Config(vocab_size=VOCAB, emb_dim=16, num_heads=2, num_encoder_layers=2,
                      num_decoder_layers=2, head_dim=8, mlp_dim=32, tie_embeddings=tie)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  return EncoderDecoderModel(cfg, VOCABULARY), shapes


# (builder, d_model, parameters of looked-up tables besides the token embedding: mT5's
# relative-position bias, [buckets 32, heads 2] in the encoder and in the decoder)
@pytest.mark.parametrize("build,width,lookups", [(_decoder, 32, 0), (_mt5, 16, 2 * 32 * 2)],
                         ids=["decoder", "mt5"])
def test_a_tied_output_layer_counts_as_the_matmul_it_is(build, width, lookups):
  counts, totals = {}, {}
  for tie in (False, True):
    model, shapes = build(tie)
    abstract = nn.unbox(jax.eval_shape(lambda r: model.init_variables(r, shapes),
                                       jax.random.PRNGKey(0))["params"])
    counts[tie] = model.matmul_params(abstract)
    totals[tie] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
  assert totals[False] - totals[True] == VOCAB * width  # the untied head's own kernel
  assert counts[True] == counts[False]
  # Untied: everything but the tables that are looked up, not multiplied.
  assert sum(counts[False]) == totals[False] - VOCAB * width - lookups
  assert counts[False][0] > 0 if build is _mt5 else counts[False][0] == 0
