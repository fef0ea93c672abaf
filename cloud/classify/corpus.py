"""The labelled complaint texts the classifier learns from, checked against the taxonomy, and their split.

The corpus is two JSON-lines files kept as package data (cloud/classify/corpus/README.md says how
they were written). Every line is checked when loaded: a line that is not what the taxonomy
allows stops the load with the file, the line number and the field, so a mistake cannot train
a model quietly.

The split into training and held-out parts is decided per text by a hash of the salt, the
text's stratum (subcategory and language) and the text: a text is held out when its hash falls
in the lowest `HELD_OUT_SHARE` of the hash range. Adding texts never moves a text from one side
to the other, so a model trained on an earlier version of the corpus has never seen any text
held out now, and the running model and a new one are compared fairly on the same held-out texts.
A decision per text leaves each stratum's held-out share to chance (binomial: with 24 texts,
anything from 0 to 10); the salt was chosen once so that every stratum of the corpus as written
has 3 to 7 held-out texts (`cloud.classify.tuning.find_salt`, the first salt from 0 that does).
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from cloud.classify.taxonomy import CATEGORIES, SUBCATEGORIES

#: the corpus files and the language every line of each must carry
FILES: dict[str, str] = {"complaints_zh.jsonl": "zh", "complaints_en.jsonl": "en"}
LANGUAGES: tuple[str, ...] = ("zh", "en")
FIELDS: tuple[str, ...] = ("text", "category", "subcategory", "lang")
#: share of each stratum held out for evaluation (in expectation: the hash decides per text)
HELD_OUT_SHARE = 0.2
#: see the module's note; changing it reshuffles the split (and makes stored models' figures incomparable)
SPLIT_SALT = "120"
#: a corpus text longer than this is a mistake (complaints are a few sentences)
MAX_TEXT_CHARS = 1000


class CorpusError(ValueError):
    """A corpus line that does not fit the taxonomy: where it is and what is wrong."""

    def __init__(self, file: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{file}:{line}: {field}: {reason}")
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    text: str
    category: str
    subcategory: str
    lang: str
    file: str = ""
    line: int = 0

    @property
    def stratum(self) -> tuple[str, str]:
        return (self.subcategory, self.lang)


@dataclass(frozen=True)
class Split:
    training: list[Example]
    held_out: list[Example]


def corpus_dir() -> Traversable:
    return resources.files("cloud.classify") / "corpus"


def parse_line(raw: str, *, file: str, line: int, lang: str | None) -> Example:
    """One line as an Example, or CorpusError naming the field that is wrong."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CorpusError(file, line, "json", f"not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise CorpusError(file, line, "json", "not a JSON object")
    for name in FIELDS:
        if name not in record:
            raise CorpusError(file, line, name, "missing")
        if not isinstance(record[name], str):
            raise CorpusError(file, line, name, "not a string")
    extra = sorted(set(record) - set(FIELDS))
    if extra:
        raise CorpusError(file, line, extra[0], f"unknown field (the fields are {', '.join(FIELDS)})")
    text = record["text"].strip()
    if not text:
        raise CorpusError(file, line, "text", "empty")
    if len(text) > MAX_TEXT_CHARS:
        raise CorpusError(file, line, "text", f"longer than {MAX_TEXT_CHARS} characters")
    if record["category"] not in CATEGORIES:
        raise CorpusError(file, line, "category", f"{record['category']!r} is not one of {', '.join(CATEGORIES)}")
    sub = record["subcategory"]
    if sub not in SUBCATEGORIES:
        raise CorpusError(file, line, "subcategory", f"{sub!r} is not a subcategory of the taxonomy")
    if SUBCATEGORIES[sub] != record["category"]:
        raise CorpusError(
            file, line, "subcategory", f"{sub!r} belongs to {SUBCATEGORIES[sub]!r}, not {record['category']!r}"
        )
    if record["lang"] not in LANGUAGES:
        raise CorpusError(file, line, "lang", f"{record['lang']!r} is not one of {', '.join(LANGUAGES)}")
    if lang is not None and record["lang"] != lang:
        raise CorpusError(file, line, "lang", f"{record['lang']!r} in the {lang!r} file")
    return Example(text, record["category"], sub, record["lang"], file, line)


def parse(content: str, *, file: str, lang: str | None = None) -> list[Example]:
    """Every non-blank line of one file; the first bad line raises CorpusError."""
    return [
        parse_line(raw, file=file, line=number, lang=lang)
        for number, raw in enumerate(content.splitlines(), start=1)
        if raw.strip()
    ]


def _read(folder: Traversable | Path) -> dict[str, str]:
    """The corpus files' text; a missing file reads as empty (the corpus may be partly written)."""
    found = {}
    for name in FILES:
        entry = folder / name
        found[name] = entry.read_text(encoding="utf-8") if entry.is_file() else ""
    return found


def load(folder: Traversable | Path | None = None) -> list[Example]:
    """Every example of both files, checked; duplicate texts are an error (one text, one label)."""
    examples: list[Example] = []
    seen: dict[str, Example] = {}
    for name, content in _read(folder or corpus_dir()).items():
        for example in parse(content, file=name, lang=FILES[name]):
            key = normalise(example.text)
            if key in seen:
                first = seen[key]
                raise CorpusError(name, example.line, "text", f"the same text as {first.file}:{first.line}")
            seen[key] = example
            examples.append(example)
    return examples


def content_hash(folder: Traversable | Path | None = None) -> str:
    """A digest of the corpus files' bytes: models trained from the corpus alone are cached by it."""
    digest = hashlib.sha256()
    for name, content in _read(folder or corpus_dir()).items():
        digest.update(name.encode() + b"\0" + content.encode("utf-8") + b"\0")
    return digest.hexdigest()


def normalise(text: str) -> str:
    """What counts as the same text: case and runs of white space do not."""
    return " ".join(text.split()).casefold()


def hash_fraction(example: Example, salt: str = SPLIT_SALT) -> float:
    """A number in [0, 1) fixed by the salt, the stratum and the text alone."""
    key = f"{salt}\0{example.subcategory}\0{example.lang}\0{normalise(example.text)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def is_held_out(example: Example, share: float = HELD_OUT_SHARE, salt: str = SPLIT_SALT) -> bool:
    return hash_fraction(example, salt) < share


def split(examples: Iterable[Example], share: float = HELD_OUT_SHARE, salt: str = SPLIT_SALT) -> Split:
    """Training and held-out parts; each text's side depends on that text only (see the module's note)."""
    training, held_out = [], []
    for example in examples:
        (held_out if is_held_out(example, share, salt) else training).append(example)
    return Split(training, held_out)


def counts(examples: Iterable[Example]) -> Counter[tuple[str, str]]:
    """Examples per (subcategory, language)."""
    return Counter(e.stratum for e in examples)
