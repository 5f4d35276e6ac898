# %% [markdown]
# # What cleaning removes from the default corpus
#
# We run the `prepare` pipeline's first stages (read, clean, redact) on a slice of
# the standard library, test suites included: they are full of made-up e-mail
# addresses and IP addresses, which makes redaction visible. Nothing is tokenized.

# %%
import json

import matplotlib.pyplot as plt

from llm_reference import compliance
from llm_reference.cleaning import NearDuplicates, clean, normalize
from llm_reference.compliance import SourceRecord
from llm_reference.data import read_documents
from llm_reference.filters import FILTERS, QualityReport
from llm_reference.sources import open_sources, pydoc_topics, stdlib_files

BOOK = {"timeout": 600, "seed": 0,
        "settings": {"max_bytes": 4_000_000, "stdlib_tests": True,
                     "near_dup_threshold": 0.85}}
S = BOOK["settings"]

sources = open_sources(["stdlib"], include_tests=S["stdlib_tests"])
records = {s.id: SourceRecord(s.id, s.kind, s.license) for s in sources}
documents = list(read_documents(sources, records, S["max_bytes"]))
kept = list(clean(documents, records, S["near_dup_threshold"]))
record = records["stdlib"]

# %% tags=["checkpoint"]
print(f"read       {record.documents:5d} documents {record.bytes / 1e6:6.2f} MB")
print(f"empty      {record.empty:5d}")
print(f"exact dup  {record.exact_duplicates:5d}")
print(f"near dup   {record.near_duplicates:5d}")
print(f"kept       {record.kept_documents:5d} documents "
      f"{record.kept_bytes / 1e6:6.2f} MB")
print("redacted   " + ", ".join(f"{name} {n}" for name, n
                                in sorted(record.redacted.items())))

# %% [markdown]
# Which documents were dropped as duplicates? The same checks as `clean`, in order.

# %% tags=["dropped"]
seen: dict[str, str] = {}
near = NearDuplicates(S["near_dup_threshold"])
dropped = []
for doc in documents:
    text = normalize(doc.text)
    if not text.strip():
        continue
    if text in seen:
        dropped.append({"path": doc.path, "why": "exact", "same_as": seen[text]})
    elif near.is_duplicate(text):
        dropped.append({"path": doc.path, "why": "near", "same_as": ""})
    else:
        seen[text] = doc.path
for d in dropped:
    same = f"  = {d['same_as']}" if d["same_as"] else ""
    print(f"{d['why']:5}  {d['path']}{same}")

# %% [markdown]
# Where was the PII? `scan` finds it without changing anything and masks the values.

# %% tags=["scan"]
report = compliance.scan((doc.path, doc.text) for doc in documents)
print(report.format())

# %% tags=["sample"]
SAMPLE = ("Write to a.turing@bletchley-park.uk or call +1 415-555-0123. "
          "The server is 8.8.8.8, the docs use 192.0.2.1 and bob@example.com, "
          "and the key is AKIAIOSFODNN7EXAMPLE.")
redacted, counts = compliance.redact(SAMPLE)
print(redacted)
print(dict(sorted(counts.items())))

# %% [markdown]
# The quality filters of `prepare --quality-filters` (Gopher, C4, FineWeb) were tuned
# on web prose. We run them, counting only, on the same code documents and on the
# corpus's English prose, the pydoc topics: which filter drops each document first?

# %% tags=["quality"]
corpora = {"code (stdlib slice)": [d.text for d in documents],
           "prose (pydoc topics)": [d.text for d in pydoc_topics()]}
quality = {name: QualityReport() for name in corpora}
for name, texts in corpora.items():
    for text in map(normalize, texts):
        if text.strip():  # empty documents never reach the filters
            quality[name].check(text)
    q = quality[name]
    print(f"{name}: kept {q.kept} of {q.kept + q.dropped.total()} documents; "
          "dropped by " + ", ".join(f"{rule} {n}" for rule, n
                                    in q.dropped.most_common()))
rules = [r.__name__ for r in FILTERS
         if any(q.dropped[r.__name__] for q in quality.values())]
fig, ax = plt.subplots(figsize=(6, 0.3 * len(rules) + 1.1))
for i, ((name, q), color) in enumerate(zip(quality.items(),
                                           ("#0969da", "#bc4c00"))):
    shares = [100 * q.dropped[r] / (q.kept + q.dropped.total()) for r in rules]
    ax.barh([k + 0.4 * i for k in range(len(rules))], shares, height=0.4,
            color=color, label=name)
ax.set_yticks([k + 0.2 for k in range(len(rules))], rules, fontsize=8)
ax.invert_yaxis()
ax.set_xlabel("% of the documents dropped (by the first filter they fail)")
ax.legend(frameon=False, fontsize=8)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("quality_filters.svg")

# %%
_, default_files = stdlib_files()  # the default corpus: no test suites
corpus_bytes = sum(len(p.read_bytes()) for p in default_files)
corpus_bytes += sum(len(d.text.encode("utf-8")) for d in pydoc_topics())
print(f"default corpus: {len(default_files)} files + pydoc topics, "
      f"{corpus_bytes / 1e6:.1f} MB")
lsh = {"threshold": near.threshold, "num_perm": near.num_perm, "bands": near.bands,
       "rows": near.rows}
json.dump({"corpus_bytes": corpus_bytes, "record": record.to_dict(), "dropped": dropped,
           "lsh": lsh,
           "scan": report.to_dict(), "sample": {"before": SAMPLE, "after": redacted},
           "quality": {name: {"kept": q.kept, "dropped": dict(q.dropped)}
                       for name, q in quality.items()}},
          open("cleaning.json", "w"), indent=1)
