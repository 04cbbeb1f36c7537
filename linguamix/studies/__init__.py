"""Studies: each a grid of runs, training presets, evaluations and figures (`linguamix study`).

`STUDIES[name]` is a `base.Study`; nothing here imports JAX or SeqIO, so listing a
grid or writing a plan is instant.
"""

from linguamix.studies import better_alpaca, linguistic, opengptx, pinch, sphinx
from linguamix.studies.base import Run, Study

STUDIES: dict[str, Study] = {s.name: s for s in (
    pinch.STUDY, better_alpaca.STUDY, opengptx.STUDY, linguistic.STUDY, sphinx.STUDY)}
