"""A checksum per array, computed on device: what the trainer records in each checkpoint's
`meta` and every reader compares after a restore.

OCDBT checks its index with CRC-32C, but array chunks carry no checksum, so flipped bytes
there restore silently as different numbers; these sums catch that.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _bits(x: jax.Array) -> jax.Array:
  """The array's bit patterns as uint32 (one per element; 8-byte types: two)."""
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  return jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)


def _mix(x: jax.Array) -> jax.Array:
  """A bijective 32-bit integer hash (lowbias32): every input bit moves every output bit."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


@jax.jit
def _checksums(tree):
  def one(x):
    u = _bits(x)
    # Each element hashed with its position (elementwise iotas, no reshape of a sharded
    # array), then summed (uint32 wraps): a flipped bit, a swapped chunk or a sign
    # change of the whole array changes the sum.
    pos = jnp.zeros(u.shape, jnp.uint32)
    for axis in range(u.ndim):
      pos = _mix(pos + jax.lax.broadcasted_iota(jnp.uint32, u.shape, axis))
    return jnp.sum(_mix(u ^ _mix(pos + jnp.uint32(0x9E3779B9))), dtype=jnp.uint32)
  return jax.tree.map(one, tree)


def checksums(tree: Any) -> dict[str, int]:
  """{array path: uint32 checksum of its contents} (computed on device)."""
  sums = jax.device_get(_checksums(tree))
  return {jax.tree_util.keystr(p): int(v) for p, v in jax.tree_util.tree_leaves_with_path(sums)}


def mismatch(tree: Any, expected: dict[str, int] | None, prefix: str = "") -> str | None:
  """What is wrong with the first array whose contents changed since saved, or None.
  `prefix`: the keystr of `tree` within the saved tree (e.g. "['params']")."""
  if not expected:
    return None  # written before checksums were recorded, or not by the trainer
  for name, value in checksums(tree).items():
    want = expected.get(prefix + name)
    if want is not None and want != value:
      return (f"array {prefix + name} does not match its checksum (saved {want}, read "
              f"{value}): the checkpoint is corrupt")
  return None
