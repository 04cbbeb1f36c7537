"""The architecture registry: every transformers config flag is translated, refused by name, or
declared inert; architecture names live in the family tables only."""

import inspect
import pathlib
import re

import pytest
import transformers

from linguamix.models.hf import architectures

ARCHITECTURES = architectures.names()


def _flags(config_class: str) -> set[str]:
  params = inspect.signature(getattr(transformers, config_class).__init__).parameters
  return {p for p in params if p not in ("self", "kwargs")}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_transformers_flag_is_read_refused_or_inert(name):
  arch = architectures.get(name)
  hf = architectures.HFConfig(getattr(transformers, arch.config_class)().to_dict(), "default config")
  arch.fields(hf)
  unclassified = _flags(arch.config_class) - hf.read - set(arch.refused) - arch.inert - architectures.COMMON_INERT
  assert not unclassified, f"{name}: flags neither translated, refused nor inert: {sorted(unclassified)}"


def _other_value(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1
  return "something-else"


@pytest.mark.parametrize("name,flag", [(n, f) for n in ARCHITECTURES for f in architectures.get(n).refused])
def test_a_refused_flag_is_refused_by_name(name, flag):
  arch = architectures.get(name)
  config = getattr(transformers, arch.config_class)().to_dict()
  config[flag] = bad = _other_value(arch.refused[flag])
  with pytest.raises(ValueError, match=rf"^cfg/config.json: {flag}={re.escape(repr(bad))} is not supported"):
    arch.fields(config, "cfg/config.json")


def test_unknown_architecture_lists_the_supported_ones():
  with pytest.raises(ValueError, match=r"architectures=\['FalconForCausalLM'\] is not supported; "
                                       r"supported: .*LlamaForCausalLM"):
    architectures.lookup({"architectures": ["FalconForCausalLM"]}, "x/config.json")


def test_architecture_names_appear_only_in_the_family_tables():
  """A new family is a table entry: no code outside linguamix/models/hf/families names one."""
  root = pathlib.Path(architectures.__file__).parents[2]
  pattern = re.compile(r"[\"'](\w+(ForCausalLM|ForConditionalGeneration|LMHeadModel))[\"']")
  offenders = [f"{path.relative_to(root)}: {m.group(1)}"
               for path in root.rglob("*.py") if "families" not in path.parts
               for m in pattern.finditer(path.read_text())]
  assert not offenders, offenders
