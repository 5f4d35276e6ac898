"""Learning BPE merges: the loop that builds a byte-level BPE vocabulary.

Training starts from word counts (`tokenizer.count_words`) with every word spelled
as its bytes, ids 0..255. It repeatedly merges the most frequent adjacent pair of
tokens, counting each word as often as it occurs, into a new token. Ties are broken
deterministically: the highest count wins, then the pair whose byte strings
`(left, right)` compare smallest. It stops when the vocabulary is full, or earlier
if the corpus runs out of pairs.

Recounting every pair after each merge would cost a pass over the corpus per merge;
`_PairIndex` keeps the counts up to date instead, touching only the words that hold
the merged pair.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

from tqdm import tqdm

Pair = tuple[int, int]


def merge_pair(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, left to right, by `new_id`."""
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class _PairIndex:
    """The pair counts of a corpus of words, kept up to date as pairs are merged.

    Recounting every pair after each merge costs a pass over the whole corpus per
    merge. Instead we keep
      `counts`: pair -> how often it occurs (each word weighted by its frequency),
      `where`:  pair -> indices of the words that contain it (may hold stale ones),
      `heap`:   (-count, left bytes, right bytes, pair) entries, to find the best pair,
    and a merge touches only the words that contain the merged pair.
    """

    def __init__(self, word_counts: dict[bytes, int], vocab: dict[int, bytes]):
        self.vocab = vocab
        self.words = [list(word) for word in word_counts]  # byte ids 0..255
        self.freqs = list(word_counts.values())
        self.counts: defaultdict[Pair, int] = defaultdict(int)
        self.where: defaultdict[Pair, set[int]] = defaultdict(set)
        for i, (word, freq) in enumerate(zip(self.words, self.freqs)):
            for pair in zip(word, word[1:]):
                self.counts[pair] += freq
                self.where[pair].add(i)
        self.heap = [self._entry(pair) for pair in self.counts]
        heapq.heapify(self.heap)

    def _entry(self, pair: Pair) -> tuple:
        """Heap order: highest count first, then smallest (left bytes, right bytes)."""
        return (-self.counts[pair], self.vocab[pair[0]], self.vocab[pair[1]], pair)

    def best(self) -> Pair | None:
        """The most frequent pair (ties: smallest bytes), or None when none is left.

        Counts only fall after an entry is pushed, so an entry may be stale: too high.
        We pop until an entry's count is current, pushing stale ones back corrected
        ("lazy invalidation"); every other entry then holds at most this count.
        """
        while self.heap:
            entry = heapq.heappop(self.heap)
            pair = entry[-1]
            count = self.counts[pair]
            if count == -entry[0]:
                return pair
            if count > 0:
                heapq.heappush(self.heap, self._entry(pair))
        return None

    def merge(self, pair: Pair, new_id: int) -> None:
        """Merge `pair` into `new_id` in every word that holds it; update the counts."""
        gained = set()
        for i in self.where.pop(pair):
            word, freq = self.words[i], self.freqs[i]
            merged = merge_pair(word, pair, new_id)
            if len(merged) == len(word):  # a stale index entry: the pair is gone
                continue
            for old in zip(word, word[1:]):
                self.counts[old] -= freq
            for new in zip(merged, merged[1:]):
                self.counts[new] += freq
                if new_id in new:  # a pair that did not exist in this word before
                    self.where[new].add(i)
                    gained.add(new)
            self.words[i] = merged
        for new in gained:
            heapq.heappush(self.heap, self._entry(new))


def learn_merges(
    word_counts: dict[bytes, int], num_tokens: int, verbose: bool = False
) -> tuple[dict[int, bytes], dict[Pair, int]]:
    """The merge loop: learn merges until the vocabulary holds 256 + `num_tokens`.

    Returns the vocabulary {id: bytes} and the merges {pair: new id} in the order they
    were learned (a merge's position is its rank). Stops early if no pair is left.
    Each merge makes a token that did not exist: inside a word, merges apply in one
    global order, so the same bytes always form from the same pair.
    """
    vocab = {i: bytes([i]) for i in range(256)}
    merges: dict[Pair, int] = {}
    index = _PairIndex(word_counts, vocab)
    new_ids = range(256, 256 + num_tokens)
    for new_id in tqdm(new_ids, desc="merging", unit="merge", disable=not verbose):
        pair = index.best()
        if pair is None:
            break
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges[pair] = new_id
        index.merge(pair, new_id)
    return vocab, merges
