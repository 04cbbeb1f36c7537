"""Language-proportion recipes as SeqIO mixtures; `import linguamix.mixtures` registers them.

Also registers every instruction task (linguamix.t5x_tasks). Needs SeqIO only, so
upstream T5X can import it from gin. Families: Pinch (`pinch_*`, incl. `pinch_40shot`),
Better Alpaca (`better_alpaca_*`), OpenGPT-X (`opengptx_*`), linguistically-informed
(`li_*`), sPhinX (`sphinx_tiers*`). A registered name is built (ids chosen, checked) on
first use, with gin's bindings; `build(name, options, vocabulary)` builds one explicitly.
"""

import linguamix.t5x_tasks  # noqa: F401  (registers the tasks the recipes draw from)
from linguamix.mixtures import better_alpaca, linguistic, opengptx, pinch, sphinx
from linguamix.mixtures.selection import Recipe, RecipeError, even_split, plan
from linguamix.mixtures.registry import (
    RecipeMixture, RegisteredRecipe, build, examples_rate, get, mixture_options, register,
    register_tasks)
from linguamix.mixtures.linguistic import register_li
# The recipes' gin knobs, as attributes too: gin files with dynamic registration
# resolve `linguamix.mixtures.pinch_config.budget = ...` through the module.
from linguamix.mixtures.pinch import pinch_config
from linguamix.mixtures.better_alpaca import better_alpaca_config
from linguamix.mixtures.opengptx import opengptx_config
from linguamix.mixtures.linguistic import li_config
from linguamix.mixtures.sphinx import sphinx_config

for _module in (pinch, better_alpaca, opengptx, linguistic, sphinx):
  _module.register_all()
