"""mT5 checkpoint formats: legacy T5X (msgpack + zarr), Hugging Face safetensors, Orbax.

Every loader builds the complete parameter tree in host memory and checks it against the
model's expected names and shapes before returning, so a bad checkpoint is never half-loaded.
The trainer's own checkpoints (save, restore, resume) are `linguamix.train.checkpoints`;
fetching the studies' base checkpoints is `linguamix.prepare.base_checkpoints`.
"""
