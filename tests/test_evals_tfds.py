"""The TFDS loaders (xnli, paws_x_wiki, xquad), fed examples in each builder's structure.

Preparing the real TFDS datasets needs the network; `tfds.testing.mock_data` lets
`tfds.load` return examples we write in the builder's own feature structure (XNLI:
`premise` a Translation over 15 languages, `hypothesis` TranslationVariableLanguages),
so the real loading code runs: `tfds.load`, XNLI's per-language explode, field mapping.
"""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import linguamix.evals  # noqa: F401
from linguamix.evals import generation
from linguamix.evals import paws_x
from linguamix.evals import xnli

LANGS = sorted(xnli.WORDS)


def _examples(name):
  if name == "xnli":
    return [{"premise": {l: f"P{i} {l}" for l in LANGS},
             # TFDS orders the hypothesis languages its own way: not the premise order.
             "hypothesis": {"language": LANGS[::-1], "translation": [f"H{i} {l}" for l in LANGS[::-1]]},
             "label": i % 3} for i in range(3)]
  if name == "paws_x_wiki":
    return [{"sentence1": "Er kam an.", "sentence2": "Er war da.", "label": 1}]
  return [{"id": "q1", "title": "T", "context": "Der Rhein.", "question": "Was?",
           "answers": {"text": ["Rhein", "Der Rhein"], "answer_start": [4, 0]}}]


def _as_dataset(self, split, **kwargs):
  examples = _examples(self.name)
  return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=
                                        self.info.features.get_tensor_spec())


@pytest.fixture
def tfds_sources():
  with gin.unlock_config():
    gin.bind_parameter("tfds_benchmarks.names", ["xnli", "paws_x", "xquad"])
  with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
    yield
  gin.clear_config()


def test_tfds_loaders(tfds_sources):
  de = xnli.load("de", "validation")
  assert [(ex.idx, ex.label) for ex in de] == [(0, 0), (1, 1), (2, 2)]
  assert de[1].continuations[2] == " P1 de, richtig? Nein, H1 de"
  paws = paws_x.PAWS_X.load("de", "test")
  assert paws[0].continuations == ("Er kam an, richtig? Nein, er war da.",
                                   "Er kam an, richtig? Ja, er war da.") and paws[0].label == 1
  quad = generation.load_xquad("de", "test")
  assert quad[0].inputs == "Context: Der Rhein.\n\nQuestion: Was?\n\nAnswer:"
  assert quad[0].references == ("Rhein", "Der Rhein")
