"""Belebele (122 language variants x 900): reading comprehension, four options.

Release files `belebele/{variant}.jsonl` (`flores_passage`, `question`,
`mc_answer1..4`, `correct_answer_num` "1".."4"). Tasks are named by the FLORES-200
variant (`belebele.eng_Latn`): several languages come in two scripts. Prompt
`P: {passage}\\nQ: {question.strip()}\\nA: {a1}\\nB: {a2}\\nC: {a3}\\nD: {a4}\\nAnswer:`,
choices " A" ... " D". Only the question is stripped, as lm-eval's yaml renders it (some
questions of the release start or end with a space); passage and answers stay as written.
"""

from __future__ import annotations

from linguamix.evals import data
from linguamix.evals import rank
from linguamix.evals import registry

VARIANTS = tuple("""
acm_Arab afr_Latn als_Latn amh_Ethi apc_Arab arb_Arab arb_Latn ars_Arab ary_Arab arz_Arab
asm_Beng azj_Latn bam_Latn ben_Beng ben_Latn bod_Tibt bul_Cyrl cat_Latn ceb_Latn ces_Latn
ckb_Arab dan_Latn deu_Latn ell_Grek eng_Latn est_Latn eus_Latn fin_Latn fra_Latn fuv_Latn
gaz_Latn grn_Latn guj_Gujr hat_Latn hau_Latn heb_Hebr hin_Deva hin_Latn hrv_Latn hun_Latn
hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn jav_Latn jpn_Jpan kac_Latn kan_Knda
kat_Geor kaz_Cyrl kea_Latn khk_Cyrl khm_Khmr kin_Latn kir_Cyrl kor_Hang lao_Laoo lin_Latn
lit_Latn lug_Latn luo_Latn lvs_Latn mal_Mlym mar_Deva mkd_Cyrl mlt_Latn mri_Latn mya_Mymr
nld_Latn nob_Latn npi_Deva npi_Latn nso_Latn nya_Latn ory_Orya pan_Guru pbt_Arab pes_Arab
plt_Latn pol_Latn por_Latn ron_Latn rus_Cyrl shn_Mymr sin_Latn sin_Sinh slk_Latn slv_Latn
sna_Latn snd_Arab som_Latn sot_Latn spa_Latn srp_Cyrl ssw_Latn sun_Latn swe_Latn swh_Latn
tam_Taml tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi tsn_Latn tso_Latn tur_Latn ukr_Cyrl
urd_Arab urd_Latn uzn_Latn vie_Latn war_Latn wol_Latn xho_Latn yor_Latn zho_Hans zho_Hant
zsm_Latn zul_Latn
""".split())
_ANSWERS = [f"mc_answer{i}" for i in range(1, 5)]
_FIELDS = tuple(["flores_passage", "question", "correct_answer_num"] + _ANSWERS)


def prompt(row) -> str:
  a1, a2, a3, a4 = (row[a] for a in _ANSWERS)
  return (f"P: {row['flores_passage']}\nQ: {row['question'].strip()}\nA: {a1}\nB: {a2}\nC: {a3}\n"
          f"D: {a4}\nAnswer:")


def load(variant: str, split: str) -> list[rank.Example]:
  registry.check_language(BELEBELE, variant)
  path = data.benchmark_path("belebele", f"{variant}.jsonl")
  examples = []
  for position, (line, row) in enumerate(data.read_jsonl(path, _FIELDS)):
    label = data.label_index(path, line, str(row["correct_answer_num"]), ("1", "2", "3", "4"))
    if label is not None:
      examples.append(rank.multiple_choice(position, prompt(row), ["A", "B", "C", "D"], label))
  return examples


BELEBELE = registry.Benchmark(
    name="belebele", languages=VARIANTS, splits=("test",), default_split="test", load=load)
registry.register_rank_benchmark(BELEBELE)
