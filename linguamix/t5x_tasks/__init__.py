"""SeqIO tasks for translated instruction sets; `import linguamix.t5x_tasks` registers them.

Families (one task per language, `{family}.{lang}`): bactrian_x, alpaca_x, lima_x,
oasst1, aya, sphinx, sphinx_langit. Needs SeqIO only (no JAX model code), so upstream
T5X can import it from gin.
"""

from linguamix.t5x_tasks.root import data_root
from linguamix.t5x_tasks.langit import LangitConfig, langit_fit
from linguamix.t5x_tasks.readers import DataError, bad_record_policy
from linguamix.t5x_tasks.sources import InstructionSource, RecordSource
from linguamix.t5x_tasks.tasks import (
    FAMILIES, OUTPUT_FEATURES, Family, add_task, register_family,
    register_instruction_task)
from linguamix.t5x_tasks.templates import TEMPLATES, family_template
from linguamix.t5x_tasks.vocab import (
    VOCABULARY, mt5_vocabulary, sample_vocabulary, task_vocabulary)
from linguamix.t5x_tasks import tasks as _tasks

_tasks.register_builtin()
