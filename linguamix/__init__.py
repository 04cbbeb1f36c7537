"""linguamix: multilingual instruction-tuning recipes, a T5X-compatible trainer, evals.

Subpackages are imported on demand; `import linguamix` itself stays light so that
`import linguamix.mixtures` pulls in SeqIO only (upstream T5X imports it from gin).
"""

__version__ = "0.1.0"
