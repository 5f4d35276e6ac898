# %% [markdown]
# # What cleaning removes from the default corpus
#
# We run the `prepare` pipeline's first stages (read, clean, redact) on a slice of
# the standard library, test suites included: they are full of made-up e-mail
# addresses and IP addresses, which makes redaction visible. Nothing is tokenized.

# %%
import json

from llm_reference import compliance
from llm_reference.cleaning import NearDuplicates, clean, normalize
from llm_reference.compliance import SourceRecord
from llm_reference.data import read_documents
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

# %%
_, default_files = stdlib_files()  # the default corpus: no test suites
corpus_bytes = sum(len(p.read_bytes()) for p in default_files)
corpus_bytes += sum(len(d.text.encode("utf-8")) for d in pydoc_topics())
print(f"default corpus: {len(default_files)} files + pydoc topics, "
      f"{corpus_bytes / 1e6:.1f} MB")
json.dump({"corpus_bytes": corpus_bytes, "record": record.to_dict(), "dropped": dropped,
           "scan": report.to_dict(), "sample": {"before": SAMPLE, "after": redacted}},
          open("cleaning.json", "w"), indent=1)
