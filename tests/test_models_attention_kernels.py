"""Pallas' splash kernel (what `attention='fused'` runs on TPU) against the materialised
reference attention, in Pallas' interpret mode on the CPU: outputs and gradients for every
mask kind a model hands it; which implementation each model gets per platform; and the
kernel inside the program libtpu's compiler builds for a TPU topology."""

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linguamix.models import attention_kernels, decoder, layers, mt5
from linguamix.train import step

RNG = np.random.default_rng(0)


def _segments(t, rows=2):
  """Packed rows: three examples then padding; (a second row) one example filling the row."""
  seg = np.zeros((rows, t), np.int32)
  seg[0, : t // 3] = 1
  seg[0, t // 3: 2 * t // 3] = 2
  seg[0, 2 * t // 3: t - 7] = 3
  seg[1:, :] = 1
  return seg


def _starts(seg):
  return np.concatenate([seg[:, :1] > 0, (seg[:, 1:] != seg[:, :-1]) & (seg[:, 1:] > 0)], axis=1)


def _prefix(seg):
  """The feature converter's decoder_causal_attention: the inputs and one position more."""
  prefix = np.zeros(seg.shape, bool)
  starts = _starts(seg)
  for b, t in zip(*np.nonzero(starts)):
    length = int(np.sum(seg[b] == seg[b, t]))
    prefix[b, t: t + max(2, length // 3)] = True
  return prefix


# (name, length, query heads, kv heads, window, local layer, softcap, prefix-LM, hidden start)
CASES = [
    ("causal_segments_gqa_padded_to_tile", 100, 4, 2, None, None, None, False, False),
    ("prefix_lm", 128, 2, 2, None, None, None, True, False),
    ("sliding_window_mqa", 128, 4, 1, 9, None, None, False, False),
    ("prefix_lm_local_layer_softcap", 128, 2, 1, None, 5, 3.0, True, False),
    ("hidden_start", 128, 2, 2, None, None, None, False, True),
]


@pytest.mark.parametrize("name,t,n,kv,window,local_window,softcap,prefix_lm,hidden", CASES,
                         ids=[c[0] for c in CASES])
def test_splash_matches_materialised_outputs_and_gradients(name, t, n, kv, window, local_window,
                                                           softcap, prefix_lm, hidden):
  seg = _segments(t, rows=1)  # interpret mode runs the kernel's grid in Python: keep it small
  prefix = _prefix(seg) if prefix_lm else None
  start = _starts(seg) if hidden else None
  # The reference mask, built the way the models build it for the materialised path.
  ref_mask = layers.attention_mask(jnp.asarray(seg), jnp.asarray(seg), causal=True, sliding_window=window,
                                   bidirectional_prefix_BxT=None if prefix is None else jnp.asarray(prefix))
  if local_window is not None:  # the decoder's sliding layers: keys less than the window back
    ref_mask = ref_mask & (np.arange(t)[:, None] - np.arange(t)[None, :] < local_window)
  if hidden:  # start_token='none': a start is seen by its own query only
    ref_mask = ref_mask & ~(start[:, None, None, :] & ~start[:, None, :, None])
  kernel_mask = attention_kernels.KernelMask.for_decoder(
      jnp.asarray(seg), prefix_BxL=None if prefix is None else jnp.asarray(prefix),
      hidden_start_BxL=None if start is None else jnp.asarray(start), window=window,
      local_window=local_window)
  if local_window is not None:  # as a scanned 'sliding_attention' layer sees it: a traced flag
    kernel_mask = kernel_mask.replace(local=jnp.asarray(True))
  np.testing.assert_array_equal(np.asarray(kernel_mask.materialise()), np.asarray(ref_mask))

  q, k, v = (jnp.asarray(RNG.normal(size=(1, t, m, 8)), jnp.float32) for m in (n, kv, kv))
  cotangent = jnp.asarray(RNG.normal(size=(1, t, n, 8)), jnp.float32)
  valid = seg > 0

  def loss(attend, q, k, v):
    out = attend(q, k, v)
    return jnp.sum(jnp.where(valid[:, :, None, None], out, 0.0) * cotangent), out

  def reference(q, k, v):
    return layers.dot_product_attention(q, k, v, mask_Bx1xTxS=ref_mask, logit_softcap=softcap)

  def splash(q, k, v):
    return attention_kernels.splash_attention(q, k, v, kernel_mask, logit_softcap=softcap,
                                              interpret=True)

  (_, ref_out), ref_grads = jax.value_and_grad(
      lambda *a: loss(reference, *a), argnums=(0, 1, 2), has_aux=True)(q, k, v)
  (_, out), grads = jax.jit(jax.value_and_grad(
      lambda *a: loss(splash, *a), argnums=(0, 1, 2), has_aux=True))(q, k, v)
  assert np.all(np.asarray(out)[~valid] == 0.0)  # padding queries: zeros, as the reference
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), rtol=1e-5, atol=2e-5)
  for g, g_ref in zip(grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=5e-5)


def test_block_sizes_are_whole_tiles_dividing_the_padded_length():
  for length, block in ((100, 128), (128, 128), (384, 384), (1024, 512), (1280, 256), (2048, 512)):
    sizes = attention_kernels.block_sizes(length, length)
    padded = attention_kernels.padded_length(length)
    assert padded % 128 == 0 and padded >= length
    assert sizes.block_q == sizes.block_kv == sizes.block_q_dkv == block
    assert padded % sizes.block_q == 0


def _llama(**kw):
  base = dict(vocab_size=64, d_model=32, num_heads=4, num_kv_heads=2, num_layers=2, mlp_dim=64,
              attention="fused", dtype=jnp.bfloat16)
  return decoder.DecoderConfig(**{**base, **kw})


@pytest.mark.parametrize("make,platform,impl,why", [
    (lambda: _llama(), "tpu", "splash", "Pallas splash"),
    (lambda: _llama(sliding_window=16), "tpu", "splash", "Pallas splash"),
    (lambda: _llama(attn_logit_softcap=50.0, layer_types=("sliding_attention", "full_attention"),
                    local_window=8), "tpu", "splash", "Pallas splash"),
    (lambda: _llama(position="alibi"), "tpu", "xla", "splash cannot express additive_bias (ALiBi)"),
    (lambda: mt5.MT5Config(attention="fused"), "tpu", "xla",
     "splash cannot express additive_bias (T5 relative position buckets)"),
    (lambda: _llama(dropout_rate=0.1), "tpu", "materialised", "xla cannot express dropout"),
    (lambda: _llama(), "gpu", "cudnn", "cuDNN"),
    (lambda: _llama(dtype=jnp.float32), "gpu", "xla", "cudnn cannot express float32"),
    (lambda: _llama(attn_logit_softcap=50.0), "gpu", "materialised",
     "xla cannot express logit_softcap (attn_logit_softcap=50.0)"),
    (lambda: _llama(), "cpu", "xla", "XLA composition"),
    (lambda: _llama(attention="materialised"), "tpu", "materialised", "attention='materialised'"),
])
def test_attention_impl_for_reads_the_table(make, platform, impl, why):
  got, reason = attention_kernels.attention_impl_for(make(), platform)
  assert got == impl
  assert why in reason


def test_model_level_needs_pick_the_implementation():
  model = decoder.DecoderOnlyModel(_llama(), None, inputs_bidirectional_attention=True)
  assert attention_kernels.attention_impl_for(model, "tpu")[0] == "splash"
  model = decoder.DecoderOnlyModel(_llama(), None, inputs_bidirectional_attention=True,
                                   start_token="none")
  impl, reason = attention_kernels.attention_impl_for(model, "tpu")
  assert impl == "xla" and "hidden_start (start_token='none') with prefix_lm" in reason


def _batch(t=128, prefix=False):
  seg = _segments(t)
  tokens = np.where(seg > 0, RNG.integers(3, 64, size=seg.shape), 0).astype(np.int32)
  pos = np.zeros_like(seg)
  for b in range(seg.shape[0]):
    for s in np.unique(seg[b][seg[b] > 0]):
      idx = np.nonzero(seg[b] == s)[0]
      pos[b, idx] = np.arange(len(idx))
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens,
           "decoder_loss_weights": (seg > 0).astype(np.float32), "decoder_segment_ids": seg,
           "decoder_positions": pos}
  if prefix:
    batch["decoder_causal_attention"] = _prefix(seg).astype(np.int32)
  return batch


@pytest.mark.parametrize("start_token,prefix", [("zero", True), ("none", False)])
def test_the_models_kernel_mask_is_the_models_mask(start_token, prefix, monkeypatch):
  """What the model hands the kernel in each layer (a sliding and a global one) describes
  the mask its materialised path uses there."""
  config = _llama(layer_types=("sliding_attention", "full_attention"), local_window=20)
  model = decoder.DecoderOnlyModel(config, None, start_token=start_token,
                                   inputs_bidirectional_attention=prefix)
  calls = []

  def spy(q, k, v, *, mask_Bx1xTxS=None, bias_BxNxTxS=None, kernel_mask=None, **kw):
    calls.append((bias_BxNxTxS, kernel_mask))
    return jnp.zeros_like(q)

  monkeypatch.setattr(layers, "dot_product_attention", spy)
  params = nn.unbox(model.init_variables(jax.random.key(0), {"decoder_input_tokens": (2, 128)}))["params"]
  calls.clear()
  model.loss_fn(params, jax.tree.map(jnp.asarray, _batch(prefix=prefix)), None)
  assert len(calls) == 2
  masks = []
  for bias, kernel_mask in calls:
    assert kernel_mask is not None
    allowed_by_bias = np.asarray(bias == 0.0)
    np.testing.assert_array_equal(np.asarray(kernel_mask.materialise()), allowed_by_bias)
    masks.append(allowed_by_bias)
  assert masks[0].sum() < masks[1].sum()  # the sliding layer sees less than the global one


# --- the program libtpu compiles for a TPU topology ---------------------------------

def _tpu_compile(config, topology="v5e:2x2", mesh_shape=(1, 2, 2), t=256, batch=4):
  if importlib.util.find_spec("libtpu") is None:
    pytest.skip("libtpu is not installed (pip install 'jax[tpu]==0.10.2'): no TPU compiler")
  from jax.experimental import topologies
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  topo = topologies.get_topology_desc(topology_name=topology, platform="tpu")
  mesh = Mesh(np.asarray(topo.devices).reshape(mesh_shape), ("data", "fsdp", "model"))
  assert attention_kernels.platform_of(mesh.devices) == "tpu"
  model = decoder.DecoderOnlyModel(config, None)
  abstract = jax.eval_shape(lambda: nn.unbox(
      model.init_variables(jax.random.key(0), {"decoder_input_tokens": (batch, t)})))
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, P())),
                        abstract["params"])
  rows = NamedSharding(mesh, P(("data", "fsdp")))
  example = _batch(t)
  example = {k: np.concatenate([v, v]) for k, v in example.items()}
  batch_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=rows) for k, v in example.items()}

  def grads(params, batch):
    return jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(params)

  # traced the way the trainer traces its steps: with the mesh in context
  return jax.jit(step.under_mesh(grads, mesh)).lower(params, batch_spec).compile().as_text()


@pytest.mark.slow
def test_tpu_program_runs_the_splash_kernel():
  # heads over 'model' (4 query, 2 key/value heads on 2 shards), batch over 'fsdp'
  hlo = _tpu_compile(_llama(head_dim=128, num_heads=4, num_kv_heads=2, scan_layers=True,
                            remat_policy="full", attn_logit_softcap=50.0,
                            layer_types=("sliding_attention", "full_attention"), local_window=64))
  assert "tpu_custom_call" in hlo
  assert "splash" in hlo  # the kernel's own name, forward and backward


@pytest.mark.slow
def test_tpu_program_of_an_alibi_model_takes_the_xla_path():
  hlo = _tpu_compile(_llama(head_dim=128, num_heads=2, num_kv_heads=2, position="alibi"))
  assert "tpu_custom_call" not in hlo
