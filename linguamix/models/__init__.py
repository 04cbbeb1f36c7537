"""Flax models under the T5X model contract (see `base.BaseModel`)."""
