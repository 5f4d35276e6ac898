"""Quality filters for web prose, after Gopher, C4 and FineWeb.

Crawled pages are full of menus, link lists, cookie banners, tables of numbers and
spam. The heuristics below, each a small function with its threshold, drop a
document that fails any of them. They come from Gopher (Rae et al., 2021, appendix
A), C4 (Raffel et al., 2020) and FineWeb (Penedo et al., 2024), which tuned them on
English web text; they are meant for prose. Source code fails them all (few stop
words, many symbols, short lines), so `prepare` runs them only when asked
(`--quality-filters`) or for a prose recipe.

Language identification (FineWeb keeps English with fastText score >= 0.65) needs a
model file that is not part of this package: the manifest reports it as skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import regex

WORD = regex.compile(r"\S+")
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}  # Gopher
BULLETS = ("•", "-", "*", "·", "‣", "◦")
TERMINAL = (".", "!", "?", '"', "'", "…")
BOILERPLATE = ("lorem ipsum", "javascript", "cookie policy", "terms of use",
               "privacy policy", "all rights reserved", "enable cookies")


def word_count(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: between 50 and 100,000 words."""
    return 50 <= len(words) <= 100_000


def mean_word_length(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: the mean word is 3 to 10 characters long."""
    return 3 <= sum(map(len, words)) / max(len(words), 1) <= 10


def symbol_ratio(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: at most 0.1 '#' or '...' per word."""
    return (text.count("#") + text.count("...") + text.count("…")
            ) <= 0.1 * len(words)


def digit_ratio(text: str, words: list[str], lines: list[str]) -> bool:
    """At most 15% of the characters are digits (tables, logs, phone lists)."""
    return sum(c.isdigit() for c in text) <= 0.15 * len(text)


def alphabetic_words(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: at least 80% of the words hold a letter."""
    return sum(any(c.isalpha() for c in w) for w in words) >= 0.8 * len(words)


def stop_words(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: at least two of the eight commonest English words occur."""
    return len(STOP_WORDS & {w.lower() for w in words}) >= 2


def bullet_lines(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: at most 90% of the lines start with a bullet (a menu, a link list)."""
    starts = sum(line.lstrip().startswith(BULLETS) for line in lines)
    return starts <= 0.9 * len(lines)


def ellipsis_lines(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: at most 30% of the lines end with an ellipsis (cut-off teasers)."""
    ends = sum(line.rstrip().endswith(("...", "…")) for line in lines)
    return ends <= 0.3 * len(lines)


def terminal_punctuation(text: str, words: list[str], lines: list[str]) -> bool:
    """FineWeb: at least 12% of the lines end like a sentence."""
    ends = sum(line.rstrip().endswith(TERMINAL) for line in lines)
    return ends >= 0.12 * len(lines)


def duplicate_lines(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: at most 30% of the lines repeat an earlier line."""
    counts = Counter(line.strip() for line in lines)
    return sum(n - 1 for n in counts.values()) <= 0.3 * len(lines)


def top_bigram(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: the commonest word pair covers at most 20% of the characters."""
    pairs = Counter(zip(words, words[1:]))
    if not pairs:
        return True
    (first, second), count = pairs.most_common(1)[0]
    return count * (len(first) + len(second)) <= 0.2 * sum(map(len, words))


def duplicate_5grams(text: str, words: list[str], lines: list[str]) -> bool:
    """Gopher: words inside repeated 5-grams are at most 15% of the characters."""
    grams = [tuple(words[i:i + 5]) for i in range(len(words) - 4)]
    counts = Counter(grams)
    repeated = set()
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            repeated.update(range(i, i + 5))
    return sum(len(words[i]) for i in repeated) <= 0.15 * sum(map(len, words))


def boilerplate(text: str, words: list[str], lines: list[str]) -> bool:
    """C4: at most 30% of the lines are site furniture (cookies, terms, lorem)."""
    hits = sum(any(phrase in line.lower() for phrase in BOILERPLATE)
               for line in lines)
    return hits <= 0.3 * len(lines)


FILTERS = (word_count, mean_word_length, symbol_ratio, digit_ratio,
           alphabetic_words, stop_words, bullet_lines, ellipsis_lines,
           terminal_punctuation, duplicate_lines, top_bigram, duplicate_5grams,
           boilerplate)
EXAMPLES = 3  # dropped documents quoted per filter in the manifest
EXAMPLE_CHARS = 160


def first_failure(text: str) -> str | None:
    """The name of the first filter that `text` fails, or None if it passes all."""
    words = WORD.findall(text)
    lines = [line for line in text.split("\n") if line.strip()] or [""]
    for rule in FILTERS:
        if not rule(text, words, lines):
            return rule.__name__
    return None


@dataclass
class QualityReport:
    """How many documents each filter dropped, with a few of them quoted."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def check(self, text: str) -> bool:
        """True to keep `text`; otherwise count it against the first filter it
        fails (so each dropped document is counted once)."""
        failure = first_failure(text)
        self.count(failure, text)
        return failure is None

    def count(self, failure: str | None, text: str) -> None:
        """Count a document that passed (`failure` None) or failed the filter named
        `failure`; `text` (its opening is enough) may be quoted as an example."""
        if failure is None:
            self.kept += 1
            return
        self.dropped[failure] += 1
        quoted = self.examples.setdefault(failure, [])
        if len(quoted) < EXAMPLES:
            quoted.append(text[:EXAMPLE_CHARS])

    def to_dict(self) -> dict:
        return {"kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
                "examples": self.examples,
                "language_id": "skipped: no language-identification model is "
                               "available locally"}
