"""TEMPORARY until linguamix.t5x_tasks lands its deferred vocabulary."""
import seqio
TASK_VOCABULARY = seqio.ByteVocabulary()
