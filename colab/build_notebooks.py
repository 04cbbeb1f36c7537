"""Writes colab/*.ipynb from the cell sources below (outputs stripped).

Edit this file, then `python colab/build_notebooks.py`; tests/test_notebooks.py executes
every notebook in smoke mode and checks that the committed files match this script.
"""

from __future__ import annotations

import pathlib
import textwrap

import nbformat

HERE = pathlib.Path(__file__).resolve().parent

# The first code cell of every notebook: install, runtime, smoke switch, `run`.
SETUP = '''
# Setup: install linguamix (on Colab), find the runtime, choose the smoke mode.
import json, os, shlex, shutil, subprocess, sys

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:  # locally linguamix is already installed (`pip install -e .`)
  REPO = os.environ.get("LINGUAMIX_REPO", "https://github.com/linguamix/linguamix")
  pip = [sys.executable, "-m", "pip", "install", "-q"]
  subprocess.run(pip + [f"linguamix @ git+{REPO}"], check=True)
  if os.path.exists("/dev/accel0") or os.environ.get("TPU_ACCELERATOR_TYPE"):
    subprocess.run(pip + ["jax[tpu]>=0.10.2,<0.11"], check=True)
  elif shutil.which("nvidia-smi"):
    subprocess.run(pip + ["jax[cuda12]>=0.10.2,<0.11"], check=True)

# Asked in a child process: a TPU opens in one process at a time, so this kernel never
# holds it and the training commands below (child processes on accelerators) can.
_probe = "import jax; d = jax.devices(); print(d[0].platform, len(d))"
PLATFORM, N_DEVICES = subprocess.run([sys.executable, "-c", _probe], capture_output=True,
                                     text=True, check=True).stdout.split()[-2:]
N_DEVICES = int(N_DEVICES)
# Smoke mode: tiny sizes and a few steps, so the notebook runs top to bottom on a CPU.
SMOKE = os.environ.get("LINGUAMIX_SMOKE", "1" if PLATFORM == "cpu" else "0") == "1"
WORK = os.path.abspath(os.environ.get("LINGUAMIX_WORK", "linguamix_work"))
os.makedirs(WORK, exist_ok=True)
print(f"runtime: {PLATFORM} x {N_DEVICES}; smoke mode: {SMOKE}; outputs under {WORK}")

# python -m MODULE -> its function in linguamix.cli.train
_PROGRAMS = {"linguamix.train": "main", "linguamix.eval": "eval_main", "linguamix.infer": "infer_main"}


def run(command: str) -> None:
  """Runs a command line exactly as a shell would take it; stops on a non-zero exit.

  On a CPU it runs inside this kernel (the libraries stay imported between commands);
  on an accelerator as a child process, which then owns the device.
  """
  print("$", command, flush=True)
  argv = shlex.split(command)
  if PLATFORM != "cpu":
    subprocess.run([sys.executable] + argv[1:] if argv[0] == "python" else argv, check=True)
    return
  if argv[0] == "linguamix":
    from linguamix import cli
    status = cli.main(argv[1:])
  else:  # python -m linguamix.train | linguamix.eval | linguamix.infer
    from linguamix.cli import train
    status = getattr(train, _PROGRAMS[argv[2]])(argv[3:])
  if status:
    raise RuntimeError(f"exit status {status}: {command}")
'''

# Benchmark release files: $LINGUAMIX_EVAL_DATA_ROOT, else downloaded once.
EVAL_DATA = '''
# Benchmark release files (XNLI, PAWS-X, XCOPA in their published layouts) under one root:
# $LINGUAMIX_EVAL_DATA_ROOT if set (a local folder or gs://), else downloaded here once.
import tarfile, urllib.request, zipfile

RELEASES = {  # folder -> (archive URL, folder inside the archive)
    "xnli": ("https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip", "XNLI-1.0"),
    "paws_x": ("https://storage.googleapis.com/paws/pawsx/x-final.tar.gz", "x-final"),
    "xcopa": ("https://github.com/cambridgeltl/xcopa/archive/refs/heads/master.zip", "xcopa-master/data"),
}


def download_benchmarks(root: str) -> None:
  for name, (url, inner) in RELEASES.items():
    if os.path.isdir(os.path.join(root, name)):
      continue
    archive, unpacked = os.path.join(root, url.split("/")[-1]), os.path.join(root, "unpacked")
    print("downloading", url)
    urllib.request.urlretrieve(url, archive)
    opener = zipfile.ZipFile if archive.endswith(".zip") else tarfile.open
    with opener(archive) as f:
      f.extractall(unpacked)
    shutil.move(os.path.join(unpacked, inner), os.path.join(root, name))


EVAL_DATA = os.environ.get("LINGUAMIX_EVAL_DATA_ROOT")
if not EVAL_DATA:
  EVAL_DATA = os.path.join(WORK, "benchmarks")
  os.makedirs(EVAL_DATA, exist_ok=True)
  download_benchmarks(EVAL_DATA)
  os.environ["LINGUAMIX_EVAL_DATA_ROOT"] = EVAL_DATA
print("benchmarks under", EVAL_DATA, ":", sorted(os.listdir(EVAL_DATA)))
'''

# Evaluation tasks: every language in full mode, two per benchmark in smoke mode.
EVAL_TASKS = '''
# Evaluation tasks: the benchmark families (every language) or, in smoke mode, two
# languages each on a few examples (EVAL_EXAMPLES counts scored choices, not questions).
if SMOKE:
  EVAL_TASKS, EVAL_EXAMPLES = ["xnli.en", "xnli.sw", "paws_x.en", "paws_x.de", "xcopa.it", "xcopa.sw"], 12
else:
  EVAL_TASKS, EVAL_EXAMPLES = ["xnli", "paws_x", "xcopa"], None
EVAL_FLAGS = f'--gin.EVAL_TASKS="{EVAL_TASKS}" --gin.run_eval.evaluate_checkpoint.num_examples={EVAL_EXAMPLES}'
'''

QUICKSTART = [
    ("md", """
# linguamix quickstart

From nothing to a result: install linguamix, look at a recipe (the Pinch 40-shot
mixture), train the tiny default mT5 on it, score it on XNLI, PAWS-X and XCOPA the way
lm-evaluation-harness does, and draw the per-language chart.

Runs on a Colab TPU, GPU or CPU runtime. On a CPU it runs in *smoke mode* (tiny sizes, a
few steps; `LINGUAMIX_SMOKE=1` forces it anywhere, `LINGUAMIX_SMOKE=0` turns it off).
The instruction data is the bundled sample set unless `LINGUAMIX_DATA_ROOT` points at the
real releases (see `docs/data.md`)."""),
    ("code", SETUP),
    ("code", """
# Sizes. Full: the trainer's tiny default (runs/quickstart.gin: 200 steps, batch 16,
# 128 + 128 tokens, a validation pass every 100 steps). Smoke: 2 steps, no validation.
RUN = os.path.join(WORK, "quickstart_run")
if SMOKE:  # the XCOPA score after training on 8 choices per language
  TRAIN_FLAGS = ("--gin.TRAIN_STEPS=2 --gin.BATCH_SIZE=4 "
                 "--gin.TASK_FEATURE_LENGTHS=\\"{'inputs': 32, 'targets': 32}\\" "
                 "--gin.trainer.train.train_eval_dataset_cfg=None "
                 "--gin.trainer.train.infer_eval_dataset_cfg=None "
                 "--gin.run_eval.benchmark.num_examples=8")
else:
  TRAIN_FLAGS = f"--gin.BATCH_SIZE={16 * max(1, N_DEVICES // 8)}"
"""),
    ("md", """
## 1. The recipe

`linguamix mixtures show` prints what a mixture holds before any training: examples and
tokens per language, the share of each language, and how many ids the languages share
(the translated sets are parallel by id)."""),
    ("code", """
from IPython.display import Image, display

run(f"linguamix mixtures show pinch_40shot --plot {WORK}/pinch_40shot.png")
display(Image(f"{WORK}/pinch_40shot.png"))
"""),
    ("md", """
## 2. Train

The main job, as on a shell: `python -m linguamix.train --gin_file=mixture_40shot.gin
--gin.MODEL_DIR=...`. Without a model gin the tiny default mT5 is used; a real model is
one more `--gin_file` (see `finetune_mt5_tpu.ipynb`)."""),
    ("code", """
run(f"python -m linguamix.train --gin_file=mixture_40shot.gin --gin.MODEL_DIR=\\"'{RUN}'\\" {TRAIN_FLAGS}")
summary = json.load(open(os.path.join(RUN, "summary.json")))
CHECKPOINT = summary["last_checkpoint"]
print(f"step {summary['final_step']}: train loss {summary['final_train']['loss']:.4f}; checkpoint {CHECKPOINT}")
"""),
    ("md", """
## 3. Evaluate on XNLI, PAWS-X and XCOPA

Rank classification by log-likelihood, lm-evaluation-harness prompts (XNLI validation,
PAWS-X test, XCOPA test). `python -m linguamix.eval` writes `metrics/*.json`, per-example
`scores/*.jsonl` and a `summary.md` table."""),
    ("code", EVAL_DATA),
    ("code", EVAL_TASKS),
    ("code", """
EVAL_DIR = os.path.join(WORK, "quickstart_eval")
run(f"python -m linguamix.eval --gin.CHECKPOINT_PATH=\\"'{CHECKPOINT}'\\" "
    f"--gin.EVAL_OUTPUT_DIR=\\"'{EVAL_DIR}'\\" {EVAL_FLAGS}")
print(open(os.path.join(EVAL_DIR, "summary.md")).read())
"""),
    ("md", """
## 4. The per-language chart

`linguamix report` draws one bar chart per benchmark (accuracy per language)."""),
    ("code", """
run(f"linguamix report {EVAL_DIR} --out {WORK}/quickstart_report")
for family in ("xnli", "paws_x", "xcopa"):
  display(Image(f"{WORK}/quickstart_report/{family}_acc.png"))
"""),
]

RECIPES = [
    ("md", """
# The five studies' recipes side by side

What each study's training mixture holds (Pinch / 40-shot, Better Alpaca, OpenGPT-X,
linguistically-informed selection, sPhinX), how the linguistically-informed study picks
its languages (TYPO, GEO, LEARN, FAM, RANDOM), and sPhinX's per-tier budgets. Nothing
is trained here.

The counts come from the data root: the bundled sample set (about 500 training examples
per language) unless `LINGUAMIX_DATA_ROOT` points at the real releases. On the sample set
sPhinX's tier budgets (100k / 50k / 25k) are scaled down 250 times so that they fit."""),
    ("code", SETUP),
    ("code", """
import gin
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import linguamix.mixtures  # registers every recipe mixture
from linguamix.mixtures import inspect, language_selection, sphinx_tiers

SAMPLE_DATA = not os.environ.get("LINGUAMIX_DATA_ROOT")
if SAMPLE_DATA:  # sPhinX budgets that fit ~500 examples per language (the recipe's gin knob)
  gin.parse_config("linguamix.mixtures.sphinx_config.tier_budgets = "
                   "{'high': 400, 'mid': 200, 'low': 100}")
"""),
    ("md", """
## 1. Compositions

One mixture per study, as `linguamix mixtures show NAME` prints it (here through its
Python function `inspect.composition`). Token counting reads every example; smoke mode
skips it."""),
    ("code", """
STUDIES = {
    "Pinch / 40-shot": "pinch_40shot",
    "Better Alpaca (multilingual)": "better_alpaca_multi",
    "OpenGPT-X (ENDEFRITES)": "opengptx_bactrianx_endefrites",
    "Linguistically-informed (TYPO, k=14)": "li_typo_k14_s66",
    "sPhinX (tiers + LANGIT)": "sphinx_tiers",
}
COMPOSITIONS = {study: inspect.composition(name, count_tokens=not SMOKE)
                for study, name in STUDIES.items()}
for study, comp in COMPOSITIONS.items():
  print(f"== {study}")
  print(inspect.format_table(comp), end="\\n\\n")
"""),
    ("code", """
fig, axes = plt.subplots(len(COMPOSITIONS), 1, figsize=(12, 2.2 * len(COMPOSITIONS)))
for ax, (study, comp) in zip(axes, COMPOSITIONS.items()):
  langs = [r["lang"] for r in comp["languages"]]
  ax.bar(langs, [r["examples"] for r in comp["languages"]], color="#4477aa")
  ax.set_yscale("log")
  ax.set_title(f"{study}: {comp['mixture']}, {comp['total_examples']:,} examples, "
               f"ids {comp['id_mode']}", fontsize=9)
  ax.tick_params(axis="x", labelsize=7)
fig.tight_layout()
fig.savefig(f"{WORK}/compositions.png", dpi=100)
plt.close(fig)
display(Image(f"{WORK}/compositions.png"))
"""),
    ("md", """
## 2. Language selection (Soykan & Şahin 2024)

k-means over lang2vec vectors, then the language nearest each centroid (TYPO: syntax +
phonology + inventory, GEO: geography, LEARN: learned vectors), one language per family
(FAM), or RANDOM. SEM needs a file of semantic-typology embeddings
(`--sem-embeddings FILE`), so it is left out here."""),
    ("code", """
run("linguamix select-languages --method typo --k 14 --seed 66")
SELECTIONS = {m: language_selection.selection_details(m, 14, 66)
              for m in ("typo", "geo", "learn", "fam", "random")}
pool = sorted(set().union(*(d["pool"] for d in SELECTIONS.values())))
print("lang " + " ".join(f"{m:>6}" for m in SELECTIONS))
for lang in pool:
  print(f"{lang:<5}" + " ".join(f"{'x' if lang in d['selected'] else '':>6}" for d in SELECTIONS.values()))
"""),
    ("code", """
# Where the chosen languages sit: the first two principal components of the vectors
# k-means clustered, for TYPO and GEO (lang2vec's public `get_features`).
import lang2vec.lang2vec as l2v
from sklearn.decomposition import PCA

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, method in zip(axes, ("typo", "geo")):
  d = SELECTIONS[method]
  vectors = l2v.get_features([language_selection.lang2vec_code(c) for c in d["pool"]], d["features"])
  xy = PCA(n_components=2).fit_transform(np.array(
      [vectors[language_selection.lang2vec_code(c)] for c in d["pool"]], float))
  ax.scatter(xy[:, 0], xy[:, 1], c=[d["clusters"][c] for c in d["pool"]], cmap="tab20", s=25)
  for (x, y), code in zip(xy, d["pool"]):
    chosen = code in d["selected"]
    ax.annotate(code, (x, y), fontsize=9 if chosen else 7, weight="bold" if chosen else "normal",
                color="black" if chosen else "dimgray")
  ax.set_title(f"{method.upper()} ({d['dims']} dims): chosen in bold, colour = cluster", fontsize=9)
fig.tight_layout()
fig.savefig(f"{WORK}/language_selection.png", dpi=100)
plt.close(fig)
display(Image(f"{WORK}/language_selection.png"))
"""),
    ("md", """
## 3. sPhinX tier budgets

sPhinX samples 100k items per high-resource language, 50k per mid and 25k per low. The
study did not publish its tiers; linguamix's default table follows Joshi et al.'s resource
classes (`linguamix/mixtures/sphinx_tiers.py`; override it with
`sphinx_config.tiers` / `tier_budgets` in gin)."""),
    ("code", """
budgets = sphinx_tiers.budgets()
by_tier = {t: sorted(l for l, tier in sphinx_tiers.DEFAULT_TIERS.items() if tier == t and l in budgets)
           for t in sphinx_tiers.TIER_BUDGETS}
for tier, langs in by_tier.items():
  print(f"{tier:<5} {sphinx_tiers.TIER_BUDGETS[tier]:>7,} each x {len(langs):>2} = "
        f"{sphinx_tiers.TIER_BUDGETS[tier] * len(langs):>9,}: {' '.join(langs)}")
print(f"total {sum(budgets.values()):,} items over {len(budgets)} languages")

langs = sorted(budgets, key=lambda l: (-budgets[l], l))
colours = {"high": "#228833", "mid": "#ccbb44", "low": "#ee6677"}
fig, ax = plt.subplots(figsize=(13, 3))
ax.bar(langs, [budgets[l] for l in langs], color=[colours[sphinx_tiers.DEFAULT_TIERS[l]] for l in langs])
ax.set_ylabel("items")
ax.set_title("sPhinX default budgets by resource tier (green high, yellow mid, red low)")
ax.tick_params(axis="x", labelsize=7)
fig.tight_layout()
fig.savefig(f"{WORK}/sphinx_tiers.png", dpi=100)
plt.close(fig)
display(Image(f"{WORK}/sphinx_tiers.png"))
"""),
]

FINETUNE = [
    ("md", """
# Fine-tune mT5 from the public T5X checkpoint

Pick a mixture, import the public mT5 checkpoint
(`gs://t5-data/pretrained_models/t5x/mt5_{size}/checkpoint_1000000`) with
`linguamix convert import-t5x`, fine-tune it with `python -m linguamix.train` and the
size's model gin, evaluate on XNLI / PAWS-X / XCOPA and export the result to Hugging Face.

The setup cell finds the runtime and picks a size that fits: mT5-base on a TPU with 8+
cores or a 40 GB+ GPU, mT5-small otherwise. On a CPU (smoke mode) there is no network
copy of the checkpoint to read and no time for a real size: the tiny mT5 is first trained
for two steps to stand in for the public checkpoint, and the fine-tuning starts from it
exactly as it would from the imported one."""),
    ("code", SETUP),
    ("code", """
MIXTURE_GIN = "mixture_40shot.gin"  # or mixture_better_alpaca.gin, mixture_sphinx.gin, ...
FINETUNE_STEPS = 2 if SMOKE else 1000

def gpu_memory_gib() -> float:
  out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, check=True).stdout
  return int(out.split()[0]) / 1024

if SMOKE:
  SIZE, BATCH, LENGTHS = "tiny", 4, "{'inputs': 32, 'targets': 32}"
elif PLATFORM == "tpu":
  SIZE = "base" if N_DEVICES >= 8 else "small"
  BATCH, LENGTHS = 8 * N_DEVICES, "{'inputs': 512, 'targets': 512}"
elif PLATFORM == "gpu":
  SIZE = "base" if gpu_memory_gib() >= 40 else "small"
  BATCH, LENGTHS = 16 * N_DEVICES, "{'inputs': 512, 'targets': 512}"
else:
  SIZE, BATCH, LENGTHS = "small", 4, "{'inputs': 256, 'targets': 256}"
MODEL_GIN = f"models/mt5_{SIZE}.gin"
# Parameters and optimizer state sharded over all devices (FSDP), the batch too.
SHARDING = f"--gin.partitioning.Partitioner.fsdp={N_DEVICES}"
print(f"mT5-{SIZE} on {PLATFORM} x {N_DEVICES}: batch {BATCH}, lengths {LENGTHS}, {FINETUNE_STEPS} steps")
"""),
    ("md", """
## 1. The initial checkpoint"""),
    ("code", """
SMALL_RUN = ("--gin.trainer.train.train_eval_dataset_cfg=None "
             "--gin.trainer.train.infer_eval_dataset_cfg=None") if SMOKE else ""
if SMOKE:  # stand-in for the public checkpoint: the tiny mT5 after 2 steps
  run(f"python -m linguamix.train --gin_file=mixture_40shot.gin --gin_file={MODEL_GIN} "
      f"--gin.MODEL_DIR=\\"'{WORK}/stand_in'\\" --gin.INITIAL_CHECKPOINT_PATH=None "
      f"--gin.TRAIN_STEPS=2 --gin.BATCH_SIZE={BATCH} --gin.TASK_FEATURE_LENGTHS=\\"{LENGTHS}\\" {SMALL_RUN}")
  INITIAL, START_STEP = f"{WORK}/stand_in/checkpoint_2", 2
else:
  INITIAL, START_STEP = f"{WORK}/mt5_{SIZE}", 1_000_000
  run(f"linguamix convert import-t5x gs://t5-data/pretrained_models/t5x/mt5_{SIZE}/checkpoint_1000000 {INITIAL}")
"""),
    ("md", """
## 2. Fine-tune

`TRAIN_STEPS` is absolute, as in T5X: the checkpoint's steps plus the fine-tuning steps."""),
    ("code", """
RUN = f"{WORK}/finetune_{SIZE}"
run(f"python -m linguamix.train --gin_file={MIXTURE_GIN} --gin_file={MODEL_GIN} "
    f"--gin.MODEL_DIR=\\"'{RUN}'\\" --gin.INITIAL_CHECKPOINT_PATH=\\"'{INITIAL}'\\" "
    f"--gin.TRAIN_STEPS={START_STEP + FINETUNE_STEPS} --gin.BATCH_SIZE={BATCH} "
    f"--gin.TASK_FEATURE_LENGTHS=\\"{LENGTHS}\\" {SHARDING} {SMALL_RUN}")
summary = json.load(open(f"{RUN}/summary.json"))
CHECKPOINT = summary["last_checkpoint"]
print(f"steps {summary['start_step']} -> {summary['final_step']}: "
      f"train loss {summary['final_train']['loss']:.4f}; checkpoint {CHECKPOINT}")
"""),
    ("md", """
## 3. Evaluate"""),
    ("code", EVAL_DATA),
    ("code", EVAL_TASKS),
    ("code", """
EVAL_DIR = f"{WORK}/finetune_eval"
run(f"python -m linguamix.eval --gin_file={MODEL_GIN} --gin.CHECKPOINT_PATH=\\"'{CHECKPOINT}'\\" "
    f"--gin.EVAL_OUTPUT_DIR=\\"'{EVAL_DIR}'\\" {EVAL_FLAGS}")
print(open(f"{EVAL_DIR}/summary.md").read())
"""),
    ("code", """
from IPython.display import Image, display

run(f"linguamix report {EVAL_DIR} --out {WORK}/finetune_report")
for family in ("xnli", "paws_x", "xcopa"):
  display(Image(f"{WORK}/finetune_report/{family}_acc.png"))
"""),
    ("md", """
## 4. Export to Hugging Face

`linguamix convert export-hf` writes `config.json` + `model.safetensors` that
`transformers.MT5ForConditionalGeneration.from_pretrained` loads. It needs the model's
HF config: `import-t5x` wrote it next to the imported checkpoint. The tiny stand-in has
no HF counterpart, so smoke mode skips this step."""),
    ("code", """
if not SMOKE:
  run(f"linguamix convert export-hf {CHECKPOINT} {WORK}/mt5_{SIZE}_hf --config {INITIAL}/hf_config.json")
"""),
]

TRANSFER = [
    ("md", """
# The cross-lingual transfer matrix

Train one model per recipe, evaluate each on the same benchmark languages, and draw
recipe x evaluation language: which languages in the tuning data help which languages
at test time. Here: Pinch recipes (English only, the 40-shot mix, English plus one
language 50/50, all languages equally).

Smoke mode (CPU): two recipes, the tiny mT5, two steps each, a few examples per language
— the numbers are noise, the pipeline is the real one."""),
    ("code", SETUP),
    ("code", """
if SMOKE:
  RECIPES = ["pinch_p0", "pinch_bi_en_sw"]
  TRAIN_FLAGS = ("--gin.TRAIN_STEPS=2 --gin.BATCH_SIZE=4 "
                 "--gin.TASK_FEATURE_LENGTHS=\\"{'inputs': 32, 'targets': 32}\\" "
                 "--gin.trainer.train.train_eval_dataset_cfg=None "
                 "--gin.trainer.train.infer_eval_dataset_cfg=None")
else:  # the tiny default (runs/quickstart.gin) per recipe; add --gin_file=models/mt5_base.gin ... for a real model
  RECIPES = ["pinch_p0", "pinch_40shot", "pinch_bi_en_sw", "pinch_bi_en_it", "pinch_p100"]
  TRAIN_FLAGS = f"--gin.BATCH_SIZE={16 * max(1, N_DEVICES // 8)}"
TRAIN_FLAGS += " --gin.trainer.train.benchmark=None"  # each recipe is evaluated below
"""),
    ("code", EVAL_DATA),
    ("code", EVAL_TASKS),
    ("md", """
## 1. One run per recipe

`mixture_pinch.gin` with the recipe's name in `MIXTURE_OR_TASK_NAME`, then
`python -m linguamix.eval` into one folder per recipe."""),
    ("code", """
EVAL_DIRS = {}
for recipe in RECIPES:
  run_dir, eval_dir = f"{WORK}/runs/{recipe}", f"{WORK}/evals/{recipe}"
  run(f"python -m linguamix.train --gin_file=mixture_pinch.gin --gin.MIXTURE_OR_TASK_NAME=\\"'{recipe}'\\" "
      f"--gin.MODEL_DIR=\\"'{run_dir}'\\" {TRAIN_FLAGS}")
  checkpoint = json.load(open(f"{run_dir}/summary.json"))["last_checkpoint"]
  run(f"python -m linguamix.eval --gin.CHECKPOINT_PATH=\\"'{checkpoint}'\\" "
      f"--gin.EVAL_OUTPUT_DIR=\\"'{eval_dir}'\\" {EVAL_FLAGS}")
  EVAL_DIRS[recipe] = eval_dir
"""),
    ("md", """
## 2. The matrix

`linguamix report` over the recipes' eval folders: grouped bars and, per benchmark, the
recipe x language heatmap (`transfer_{family}_acc.png`) and its CSV."""),
    ("code", """
import csv
from IPython.display import Image, display

OUT = f"{WORK}/transfer"
run(f"linguamix report {' '.join(EVAL_DIRS.values())} --out {OUT}")
for family in ("xnli", "paws_x", "xcopa"):
  display(Image(f"{OUT}/transfer_{family}_acc.png"))
"""),
    ("code", """
# Gain over the English-only recipe (accuracy points), read back from the CSV.
with open(f"{OUT}/transfer_xcopa_acc.csv") as f:
  rows = list(csv.reader(f))
header, table = rows[0], {r[0]: [float(v) for v in r[1:]] for r in rows[1:]}
base = table[RECIPES[0]]
print("xcopa acc vs", RECIPES[0], "|", " ".join(f"{l:>6}" for l in header[1:]))
for recipe, values in table.items():
  print(f"{recipe:<24} | " + " ".join(f"{v - b:>+6.1f}" for v, b in zip(values, base)))
"""),
]

NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "recipes.ipynb": RECIPES,
    "finetune_mt5_tpu.ipynb": FINETUNE,
    "transfer_matrix.ipynb": TRANSFER,
}


def build(cells) -> nbformat.NotebookNode:
  nb = nbformat.v4.new_notebook()
  nb.metadata = {
      "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
      "language_info": {"name": "python"},
      "accelerator": "TPU",
      "colab": {"provenance": []},
  }
  for kind, source in cells:
    source = textwrap.dedent(source).strip("\n")
    cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
    cell.id = f"cell-{len(nb.cells)}"  # stable ids: rebuilt files diff cleanly
    nb.cells.append(cell)
  nbformat.validate(nb)
  return nb


def main() -> None:
  for name, cells in NOTEBOOKS.items():
    path = HERE / name
    nbformat.write(build(cells), str(path))
    print("wrote", path)


if __name__ == "__main__":
  main()
