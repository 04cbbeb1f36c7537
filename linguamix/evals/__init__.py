"""Benchmarks as SeqIO tasks, scored like lm-evaluation-harness (docs/evaluation.md).

`import linguamix.evals` registers every benchmark task (`xnli.de`, `paws_x.fr`,
`xcopa.sw`, `xstorycloze.eu`, `xwinograd.ja`, `belebele.eng_Latn`, ...) and family
mixture (`xnli`, `paws_x`, `xcopa`, ...); generation tasks `xquad.de`, `flores.en_de`, `mt_bench_x.de` (two turns: its second,
`mt_bench_x_turn2.de`, is made from the first's answers when it runs), `better_alpaca_test.de`. Running them:
`linguamix.evals.runner.evaluate`; reports: `linguamix report`.
"""

from linguamix.evals import belebele
from linguamix.evals import generation
from linguamix.evals import open_prompts
from linguamix.evals import paws_x
from linguamix.evals import xcopa
from linguamix.evals import xnli
from linguamix.evals import xstorycloze
from linguamix.evals import xwinograd
