"""Quality filters: a good paragraph passes every one; each bad page fails its own."""

from __future__ import annotations

import json

import pytest

from llm_reference import filters
from llm_reference.__main__ import main
from llm_reference.filters import FILTERS, QualityReport

PROSE = ("The history of the river is long. People have lived on its banks for "
         "thousands of years, and the town that grew there traded with the coast. "
         "Boats carried grain to the sea and came back with salt, cloth and news. "
         "In winter the water froze, and children skated to the far shore.\n")
PROSE += ("Today the old mill is a museum that is open to visitors with an interest "
          "in the past of the valley and of the people who worked there.\n")

BAD = {
    "word_count": "Too short to be an article.",
    "mean_word_length": ("a b c d e f g h i j " * 10 + "the and of with.\n"),
    "symbol_ratio": PROSE + "#news #today " * 20,
    "digit_ratio": PROSE + " ".join(["1234567890"] * 40),
    "alphabetic_words": PROSE + " ".join(["=="] * 60),
    "stop_words": ("Buy cheap watches now. " * 20).strip(),
    "bullet_lines": "Our menu:\n" + "\n".join(f"- item number {w} for your meal "
                                              "and the drink with it"
                                              for w in "abcdefghijklmnopqrst"),
    "terminal_punctuation": "\n".join(f"heading {w} of the page and more words "
                                      "with the links" for w in "abcdefghij"),
    "ellipsis_lines": "\n".join(f"Read the story about {w} and the rest of the "
                                "news from the town here..." for w in "abcdefgh"),
    "top_bigram": PROSE + " ".join(["buy now"] * 40) + ".",
    "duplicate_5grams": PROSE + "".join(
        f"{w}, the boats carried grain to the sea and came back with salt.\n"
        for w in ("Then", "Later", "Often", "Still", "Again", "Once")),
    "duplicate_lines": PROSE + ("Click here to read the rest of the story.\n" * 5),
    "boilerplate": PROSE + "".join(f"Read our {page}, it is the law.\n" for page in
                                   ("cookie policy", "terms of use",
                                    "privacy policy")),
}


def first_failure(text: str) -> str | None:
    report = QualityReport()
    report.check(text)
    return next(iter(report.dropped), None)


def test_good_prose_passes_every_filter():
    assert first_failure(PROSE) is None


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_filter_drops_its_kind_of_page(name):
    assert first_failure(BAD[name]) == name


def test_every_filter_is_a_named_function_with_a_docstring():
    assert all(f.__doc__ and getattr(filters, f.__name__) is f for f in FILTERS)


def test_prepare_reports_drops_and_examples_in_the_manifest(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"good{i}.txt").write_text(f"Chapter {i}. " + PROSE.replace(
            "river", f"river number {i}").replace("mill", f"mill {i}"))
    for name, text in BAD.items():
        (corpus / f"bad_{name}.txt").write_text(text)
    out = tmp_path / "out"
    assert main(["prepare", "--source", str(corpus), "--license", "CC0-1.0",
                 "--vocab-size", "300", "--quality-filters", "--no-near-dup",
                 "--workers", "1", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    quality = manifest["quality_filters"]
    assert quality["kept"] == 12 and sum(quality["dropped"].values()) == len(BAD)
    assert quality["examples"]["boilerplate"][0].startswith(BAD["boilerplate"][:40])
    assert quality["language_id"].startswith("skipped")
    assert manifest["sources"][0]["kept"]["documents"] == 12
