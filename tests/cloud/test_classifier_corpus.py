"""The labelled corpus: big enough, both languages, every subcategory, valid labels, no duplicates;
the split disjoint, stratified and stable as texts are added; a bad line named by file, line and field."""

import json
import re
from pathlib import Path

import pytest

from cloud.classify import corpus
from cloud.classify.corpus import CorpusError, Example
from cloud.classify.taxonomy import SUBCATEGORIES, TAXONOMY

#: texts per subcategory per language, at least
PER_STRATUM = 20


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return corpus.load()


def test_the_corpus_is_big_enough_in_both_languages(examples: list[Example]) -> None:
    assert len(examples) >= 500
    counts = corpus.counts(examples)
    short = {f"{sub}/{lang}": counts[(sub, lang)] for sub in SUBCATEGORIES for lang in corpus.LANGUAGES}
    short = {k: v for k, v in short.items() if v < PER_STRATUM}
    assert short == {}, f"fewer than {PER_STRATUM} texts: {short}"
    assert {e.lang for e in examples} == {"zh", "en"}
    assert all(re.search(r"[\u4e00-\u9fff]", e.text) for e in examples if e.lang == "zh")


def test_labels_follow_the_taxonomy_and_no_text_is_there_twice(examples: list[Example]) -> None:
    for e in examples:
        assert e.subcategory in TAXONOMY[e.category], e
    normalised = [corpus.normalise(e.text) for e in examples]
    assert len(set(normalised)) == len(normalised)


def test_the_split_is_disjoint_covers_every_stratum_and_is_about_a_fifth(examples: list[Example]) -> None:
    split = corpus.split(examples)
    assert len(split.training) + len(split.held_out) == len(examples)
    assert not {e.text for e in split.training} & {e.text for e in split.held_out}
    assert 0.15 <= len(split.held_out) / len(examples) <= 0.25
    held = corpus.counts(split.held_out)
    train = corpus.counts(split.training)
    for sub in SUBCATEGORIES:
        for lang in corpus.LANGUAGES:
            assert held[(sub, lang)] >= 3 and train[(sub, lang)] >= 15, (sub, lang)
    # the same corpus splits the same way, whatever the order
    again = corpus.split(list(reversed(examples)))
    assert {e.text for e in again.held_out} == {e.text for e in split.held_out}


def test_adding_texts_moves_no_text_between_the_parts(examples: list[Example]) -> None:
    before = corpus.split(examples)
    added = [Example(f"new complaint number {i} about the lift", "facility", "elevator", "en") for i in range(200)]
    after = corpus.split(examples + added)
    old_texts = {e.text for e in examples}
    assert {e.text for e in after.held_out if e.text in old_texts} == {e.text for e in before.held_out}
    assert 0 < sum(1 for e in after.held_out if e.text not in old_texts) < 200


def write(folder: Path, zh: list[str], en: list[str]) -> Path:
    (folder / "complaints_zh.jsonl").write_text("\n".join(zh) + "\n", encoding="utf-8")
    (folder / "complaints_en.jsonl").write_text("\n".join(en) + "\n", encoding="utf-8")
    return folder


GOOD_EN = json.dumps({"text": "The lift is stuck", "category": "facility", "subcategory": "elevator", "lang": "en"})
GOOD_ZH = json.dumps({"text": "电梯坏了", "category": "facility", "subcategory": "elevator", "lang": "zh"})


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("{not json", "json", "not valid JSON"),
        ('["a list"]', "json", "not a JSON object"),
        ('{"text": "x", "category": "facility", "lang": "en"}', "subcategory", "missing"),
        ('{"text": "", "category": "facility", "subcategory": "elevator", "lang": "en"}', "text", "empty"),
        ('{"text": 5, "category": "facility", "subcategory": "elevator", "lang": "en"}', "text", "not a string"),
        ('{"text": "x", "category": "repairs", "subcategory": "elevator", "lang": "en"}', "category", "not one of"),
        ('{"text": "x", "category": "facility", "subcategory": "lifts", "lang": "en"}', "subcategory", "not a sub"),
        ('{"text": "x", "category": "safety", "subcategory": "elevator", "lang": "en"}', "subcategory", "belongs to"),
        ('{"text": "x", "category": "facility", "subcategory": "elevator", "lang": "zh"}', "lang", "in the 'en' file"),
        ('{"text": "x", "category": "facility", "subcategory": "elevator", "lang": "en", "n": 1}', "n", "unknown"),
    ],
)
def test_a_bad_line_is_named_by_file_line_and_field(tmp_path: Path, line: str, field: str, reason: str) -> None:
    folder = write(tmp_path, [GOOD_ZH], [GOOD_EN, "", line])
    with pytest.raises(CorpusError) as caught:
        corpus.load(folder)
    error = caught.value
    assert (error.file, error.line, error.field) == ("complaints_en.jsonl", 3, field)
    assert reason in error.reason
    assert str(error).startswith(f"complaints_en.jsonl:3: {field}: ")


def test_the_same_text_in_both_files_is_refused(tmp_path: Path) -> None:
    twice = json.dumps({"text": "the LIFT  is stuck", "category": "facility", "subcategory": "elevator", "lang": "zh"})
    folder = write(tmp_path, [GOOD_ZH, twice], [GOOD_EN])
    with pytest.raises(CorpusError, match=r"complaints_en.jsonl:1: text: the same text as complaints_zh.jsonl:2"):
        corpus.load(folder)


def test_the_readme_states_the_counts(examples: list[Example]) -> None:
    readme = (Path(corpus.__file__).parent / "corpus" / "README.md").read_text(encoding="utf-8")
    split = corpus.split(examples)
    expected = (
        f"{len(examples)} texts: {sum(e.lang == 'zh' for e in examples)} Chinese, "
        f"{sum(e.lang == 'en' for e in examples)} English; {len(split.training)} training, "
        f"{len(split.held_out)} held out"
    )
    assert expected in readme, f"corpus/README.md should say: {expected}"
