"""The bundled sample set: a synthetic, parallel instruction set in the published layouts.

Four templated tasks (add two numbers, copy, reverse, count words) with a per-language
instruction wording, parallel by id across languages (the same id is the same item
in every language), in the file layout of every dataset family under one root:

  bactrian_x/{lang}.json.gz                 52 languages x 5,200 items (ids sample-{i})
  alpaca_x/alpaca_data_cleaned.{lang}.json  10 languages x 2,000 items (no id field)
  lima_x/{train,val}_limax_{CFG}.jsonl      EN DE FR IT ES, 1,030 / 50 conversations
  oasst1/2023-04-12_oasst_ready.messages.jsonl.gz   message trees, 8 languages
  aya/train.jsonl                           Aya records, 10 languages x 200
  sphinx/{lang}.jsonl                       Orca shape + lang, 51 languages x 500
                                            (each language its own subset of 2,000 ids)

Only this generator is committed; `ensure_sample_root()` writes the files once into
the cache (LINGUAMIX_CACHE_DIR or ~/.cache/linguamix), deterministically, in seconds.
`python -m linguamix.t5x_tasks.sample_data --train-vocab` retrains the bundled
SentencePiece model from the same data. See sample/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sys
import tempfile

from linguamix.t5x_tasks import languages

VERSION = 1
N_BACTRIAN = 5200
N_ALPACA = 2000
N_LIMA, N_LIMA_VAL = 1030, 50
N_SPHINX_POOL, N_SPHINX = 2000, 500
OASST1_LANGS = ("en", "es", "de", "fr", "ru", "zh", "it", "ar")
AYA_LANGS = ("en", "es", "fr", "ar", "hi", "sw", "yo", "zh", "ja", "pt")

# add | copy | reverse | count the words. Short imperatives written by the project
# authors for synthetic data; approximate, not a linguistic resource.
WORDING = {
    "af": "Tel op|Kopieer|Keer om|Tel die woorde",
    "am": "ደምር|ቅዳ|ገልብጥ|ቃላቱን ቁጠር",
    "ar": "اجمع|انسخ|اعكس|عدّ الكلمات",
    "az": "Topla|Kopyala|Tərsinə çevir|Sözləri say",
    "bg": "Събери|Копирай|Обърни|Преброй думите",
    "bn": "যোগ করো|অনুলিপি করো|উল্টাও|শব্দ গণনা করো",
    "cs": "Sečti|Zkopíruj|Obrať|Spočítej slova",
    "de": "Addiere|Kopiere|Kehre um|Zähle die Wörter",
    "en": "Add|Copy|Reverse|Count the words",
    "es": "Suma|Copia|Invierte|Cuenta las palabras",
    "et": "Liida|Kopeeri|Pööra ümber|Loe sõnad kokku",
    "fa": "جمع کن|کپی کن|برعکس کن|کلمات را بشمار",
    "fi": "Laske yhteen|Kopioi|Käännä|Laske sanat",
    "fr": "Additionne|Copie|Inverse|Compte les mots",
    "gl": "Suma|Copia|Inverte|Conta as palabras",
    "gu": "ઉમેરો|નકલ કરો|ઉલટાવો|શબ્દો ગણો",
    "he": "חבר|העתק|הפוך|ספור את המילים",
    "hi": "जोड़ें|कॉपी करें|उलटें|शब्द गिनें",
    "hr": "Zbroji|Kopiraj|Obrni|Prebroji riječi",
    "id": "Jumlahkan|Salin|Balik|Hitung kata",
    "it": "Somma|Copia|Inverti|Conta le parole",
    "ja": "足し算|コピー|逆順|単語を数える",
    "ka": "შეკრიბე|დააკოპირე|შეაბრუნე|დათვალე სიტყვები",
    "kk": "Қос|Көшір|Керісінше айналдыр|Сөздерді сана",
    "km": "បូក|ចម្លង|បញ្ច្រាស|រាប់ពាក្យ",
    "ko": "더하기|복사|뒤집기|단어 세기",
    "lt": "Sudėk|Nukopijuok|Apversk|Suskaičiuok žodžius",
    "lv": "Saskaiti|Kopē|Apgriez|Saskaiti vārdus",
    "mk": "Собери|Копирај|Преврти|Изброј ги зборовите",
    "ml": "കൂട്ടുക|പകർത്തുക|തിരിക്കുക|വാക്കുകൾ എണ്ണുക",
    "mn": "Нэм|Хуулах|Урвуулах|Үгсийг тоол",
    "mr": "बेरीज करा|कॉपी करा|उलटा करा|शब्द मोजा",
    "my": "ပေါင်းပါ|ကူးပါ|ပြောင်းပြန်လုပ်ပါ|စကားလုံးများရေတွက်ပါ",
    "ne": "जोड्नुहोस्|प्रतिलिपि गर्नुहोस्|उल्टाउनुहोस्|शब्दहरू गन्नुहोस्",
    "nl": "Tel op|Kopieer|Keer om|Tel de woorden",
    "pl": "Dodaj|Skopiuj|Odwróć|Policz słowa",
    "ps": "جمع کړه|کاپي کړه|سرچپه کړه|کلمې وشمېره",
    "pt": "Some|Copie|Inverta|Conte as palavras",
    "ro": "Adună|Copiază|Inversează|Numără cuvintele",
    "ru": "Сложи|Скопируй|Переверни|Посчитай слова",
    "si": "එකතු කරන්න|පිටපත් කරන්න|ආපසු හරවන්න|වචන ගණන් කරන්න",
    "sl": "Seštej|Kopiraj|Obrni|Preštej besede",
    "sv": "Addera|Kopiera|Vänd|Räkna orden",
    "sw": "Jumlisha|Nakili|Geuza|Hesabu maneno",
    "ta": "கூட்டு|நகலெடு|தலைகீழாக்கு|சொற்களை எண்ணு",
    "te": "కూడండి|కాపీ చేయండి|తిప్పండి|పదాలను లెక్కించండి",
    "th": "บวก|คัดลอก|กลับลำดับ|นับคำ",
    "tl": "Pagsamahin|Kopyahin|Baligtarin|Bilangin ang mga salita",
    "tr": "Topla|Kopyala|Tersine çevir|Kelimeleri say",
    "uk": "Додай|Скопіюй|Переверни|Порахуй слова",
    "ur": "جمع کریں|نقل کریں|الٹ دیں|الفاظ گنیں",
    "vi": "Cộng|Sao chép|Đảo ngược|Đếm các từ",
    "xh": "Dibanisa|Kopa|Buyisela umva|Bala amagama",
    "yo": "Ṣe àròpọ̀|Dà kọ|Yí padà|Ka àwọn ọ̀rọ̀",
    "zh": "相加|复制|反转|数一数单词",
}
SYLLABLES = "ka lo mi pu re sa ti vo ne bu da fe gi ho ju ki".split()


def item(i: int, lang: str) -> dict:
  """Item i in `lang`: instruction, input, output (the same task for every language)."""
  rng = random.Random(i * 7919 + 17)
  add, copy, rev, count = WORDING[lang].split("|")
  kind = i % 4
  if kind == 0:
    a, b = rng.randrange(100), rng.randrange(100)
    return {"instruction": f"{add}: {a} + {b}", "input": "", "output": str(a + b)}
  words = [rng.choice(SYLLABLES) + rng.choice(SYLLABLES) for _ in range(rng.randint(2, 6))]
  text = " ".join(words)
  if kind == 1:
    return {"instruction": copy, "input": text, "output": text}
  if kind == 2:
    return {"instruction": rev, "input": text, "output": " ".join(reversed(words))}
  return {"instruction": count, "input": text, "output": str(len(words))}


def _write(path, text: str, gz: bool = False):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = text.encode("utf-8")
  with open(path, "wb") as f:
    f.write(gzip.compress(data, mtime=0) if gz else data)


def _jsonl(rows) -> str:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_sample(root: str) -> None:
  """Writes the whole sample set under `root` (deterministic)."""
  for lang in languages.BACTRIAN_X:
    rows = [dict(item(i, lang), id=f"sample-{i}") for i in range(N_BACTRIAN)]
    _write(f"{root}/bactrian_x/{lang}.json.gz", json.dumps(rows, ensure_ascii=False), gz=True)
  for lang in languages.ALPACA_X:
    rows = [item(i, lang) for i in range(N_ALPACA)]
    _write(f"{root}/alpaca_x/alpaca_data_cleaned.{lang}.json",
           json.dumps(rows, ensure_ascii=False, indent=1))
  for lang in languages.OPENGPTX:
    for split, n, offset in (("train", N_LIMA, 0), ("val", N_LIMA_VAL, N_LIMA)):
      rows = []
      for i in range(offset, offset + n):
        it = item(i, lang)
        user = it["instruction"] + ("\n" + it["input"] if it["input"] else "")
        rows.append({"conversations": [user, it["output"]], "source": "sample"})
      _write(f"{root}/lima_x/{split}_limax_{lang.upper()}.jsonl", _jsonl(rows))
  messages = []
  for lang in OASST1_LANGS:
    for t in range(200):
      it, tree = item(t, lang), f"{lang}-tree-{t}"
      user = it["instruction"] + ("\n" + it["input"] if it["input"] else "")
      common = {"message_tree_id": tree, "lang": lang, "deleted": False,
                "review_result": True}
      messages += [
          dict(common, message_id=tree, parent_id=None, role="prompter", text=user, rank=None),
          dict(common, message_id=f"{tree}-a0", parent_id=tree, role="assistant",
               text=it["output"], rank=0),
          dict(common, message_id=f"{tree}-a1", parent_id=tree, role="assistant",
               text=it["output"] + " ?", rank=1)]
  _write(f"{root}/oasst1/2023-04-12_oasst_ready.messages.jsonl.gz", _jsonl(messages), gz=True)
  aya = []
  for lang in AYA_LANGS:
    for i in range(200):
      it = item(i, lang)
      aya.append({"inputs": it["instruction"] + ("\n" + it["input"] if it["input"] else ""),
                  "targets": it["output"], "language": lang,
                  "language_code": languages.iso639_3(lang),
                  "annotation_type": "original-annotations", "user_id": "sample"})
  _write(f"{root}/aya/train.jsonl", _jsonl(aya))
  for k, lang in enumerate(languages.SPHINX):
    ids = sorted(random.Random(1000 + k).sample(range(N_SPHINX_POOL), N_SPHINX))
    rows = []
    for i in ids:
      it = item(i, lang)
      rows.append({"id": f"orca-{i}", "system_prompt": "You are a helpful assistant.",
                   "question": it["instruction"] + ("\n" + it["input"] if it["input"] else ""),
                   "response": it["output"], "lang": lang})
    _write(f"{root}/sphinx/{lang}.jsonl", _jsonl(rows))


def cache_dir() -> str:
  return os.environ.get("LINGUAMIX_CACHE_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "linguamix")


def ensure_sample_root() -> str:
  """The sample set's root, generated on first use (atomically: tmp dir, then rename)."""
  root = os.path.join(cache_dir(), f"sample-v{VERSION}")
  if os.path.isdir(root):
    return root
  os.makedirs(cache_dir(), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".sample-", dir=cache_dir())
  try:
    write_sample(tmp)
    os.rename(tmp, root)
  except OSError:
    if not os.path.isdir(root):  # not another process winning the race
      raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return root


def train_vocab(out_prefix: str, vocab_size: int = 1024) -> None:
  """Trains the bundled SentencePiece model on templated sample prompts and responses."""
  import sentencepiece as spm
  from linguamix.t5x_tasks import templates
  lines = []
  for lang in sorted(WORDING):
    for i in range(400):
      rec = dict(item(i, lang), system="", history=())
      for tmpl in ("alpaca", "bactrian", "opengptx_chat"):
        inputs, targets = templates.TEMPLATES[tmpl](rec)
        lines.append(inputs + targets)
  # Identity normalization, but with a non-empty charsmap: SentencePiece's C++ (also
  # tf-text's copy in every SeqIO tokenizer op) logs "precompiled_charsmap is empty" for
  # each model load otherwise. The one rule maps U+FDD0, a Unicode noncharacter that
  # never occurs in text, to U+FFFD; every real text tokenizes as with "identity".
  with tempfile.TemporaryDirectory() as tmp:
    rule_tsv = os.path.join(tmp, "rule.tsv")
    with open(rule_tsv, "w") as f:
      f.write("FDD0\tFFFD\n")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=out_prefix, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, byte_fallback=True,
        normalization_rule_tsv=rule_tsv, remove_extra_whitespaces=False,
        split_digits=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1, minloglevel=2)
  from sentencepiece import sentencepiece_model_pb2
  model = sentencepiece_model_pb2.ModelProto()
  with open(out_prefix + ".model", "rb") as f:
    model.ParseFromString(f.read())
  model.normalizer_spec.ClearField("normalization_rule_tsv")  # a temporary path
  model.trainer_spec.ClearField("model_prefix")  # the path of whoever trained it
  with open(out_prefix + ".model", "wb") as f:
    f.write(model.SerializeToString())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", help="write the sample set here (default: the cache)")
  parser.add_argument("--train-vocab", action="store_true",
                      help="retrain linguamix/t5x_tasks/sample/spm.model")
  args = parser.parse_args(argv)
  if args.train_vocab:
    train_vocab(os.path.join(os.path.dirname(__file__), "sample", "spm"))
    os.remove(os.path.join(os.path.dirname(__file__), "sample", "spm.vocab"))
    return 0
  if args.out:
    write_sample(args.out)
    print(args.out)
  else:
    print(ensure_sample_root())
  return 0


if __name__ == "__main__":
  sys.exit(main())
