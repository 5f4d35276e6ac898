"""PII redaction, the scan report, and the provenance manifest."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_reference.compliance import (
    RULES,
    SourceRecord,
    build_manifest,
    find_pii,
    mask,
    redact,
    scan,
)
from llm_reference.sources import open_sources

# Fake credentials built at run time, so this file itself holds no secret-looking text.
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuv"
SK_KEY = "sk-" + "proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
SLACK = "xoxb-" + "123456789012-abcdefghijkl"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE = "AIza" + "SyD-1234567890abcdefghijklmnopqrstu"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc+/=\n"
       "-----END RSA PRIVATE KEY-----")


@pytest.mark.parametrize("text, kind, placeholder", [
    ("mail guido@python.org today", "email", "[EMAIL]"),
    ("Contact: first.last+tag@mail.co.uk.", "email", "[EMAIL]"),
    ("server at 8.8.8.8 answers", "ipv4", "[IPV4]"),
    ("ssh 203.0.114.7,", "ipv4", "[IPV4]"),  # just past TEST-NET-3
    ("call (555) 123-4567 now", "phone", "[PHONE]"),
    ("call 555-123-4567 now", "phone", "[PHONE]"),
    ("call +1-201-555-0123 now", "phone", "[PHONE]"),
    ("ring +44 20 7946 0958 today", "phone", "[PHONE]"),
    (f"key = '{AWS_KEY}'", "aws_access_key", "[SECRET]"),
    (f"aws_secret_access_key = {AWS_SECRET}\n", "aws_secret_key", "[SECRET]"),
    (f"token: {GITHUB}", "github_token", "[SECRET]"),
    (f"token: {GITHUB_PAT}", "github_token", "[SECRET]"),
    (f'OPENAI_API_KEY="{SK_KEY}"', "sk_api_key", "[SECRET]"),
    (f"slack {SLACK}", "slack_token", "[SECRET]"),
    (f"stripe {STRIPE}", "stripe_key", "[SECRET]"),
    (f"google {GOOGLE}", "google_api_key", "[SECRET]"),
    (f"key:\n{PEM}\nend", "private_key", "[PRIVATE_KEY]"),
])
def test_each_kind_is_redacted_and_counted(text, kind, placeholder):
    redacted, counts = redact(text)
    assert counts == {kind: 1}
    assert placeholder in redacted
    assert not list(find_pii(redacted))  # nothing left to find


def test_aws_secret_keeps_its_name():
    redacted, _ = redact(f"aws_secret_access_key = {AWS_SECRET}")
    assert redacted == "aws_secret_access_key = [SECRET]"


@pytest.mark.parametrize("text", [
    "Python 3.11.7 and 2.7.18",  # versions
    "x = 0xDEADBEEF; y = 0x7f000001; mask = 0xFFFFFFFF",  # hex constants
    "loopback 127.0.0.1, private 10.0.0.1, 192.168.1.20, 172.16.5.4",
    "docs 192.0.2.1, 198.51.100.7, 203.0.113.9; link-local 169.254.1.1",
    "shared 100.64.0.1, multicast 224.0.0.251, broadcast 255.255.255.255",
    "see section 8.2.4.44 and RFC section-7.1.1.1",
    "OID 1.3.6.1.4.1.311 and version 1.2.3.4.5",
    "reverse 1.0.0.127.in-addr.arpa",
    "999.1.1.1 is not an address; neither is 01.02.03.04",
    "user@example.com and admin@mail.example.org and bob@host.test",
    "@property\ndef f(self): return a @ b.T",
    "decorated @functools.wraps(func)",
    "date 2024-01-15, time 12:30:45, isbn 978-3-16-148410-0",
    "n = 1234567890; big = 12345678901234567890",
    "price 1.234.567 and pi 3.14159",
    "import sklearn as sk; sk-learn-compatible-estimators-and-more",
    "task-12345678901234567890 and disk-abcdefghijklmnopqrstuvwxyz",
    "x = a+1 234 567",
])
def test_no_false_positives_on_code_like_text(text):
    assert redact(text) == (text, {})


def test_placeholders_do_not_look_like_special_tokens():
    for rule in RULES:
        assert rule.placeholder.startswith("[") and rule.placeholder.endswith("]")
        assert "<|" not in rule.placeholder


def test_overlapping_matches_keep_the_first():
    text = f"{PEM}\nmail a@python.org"
    redacted, counts = redact(text)
    assert redacted == "[PRIVATE_KEY]\nmail [EMAIL]"
    assert counts == {"private_key": 1, "email": 1}


def test_a_match_inside_a_losing_candidate_is_still_found():
    # The email pattern's candidate starts at the key, which wins the overlap; the
    # real address after it must still be found.
    redacted, counts = redact(f"{AWS_KEY}.bob@python.org")
    assert redacted == "[SECRET].[EMAIL]"
    assert counts == {"aws_access_key": 1, "email": 1}


def test_counts_add_up_per_type():
    text = "a@python.org b@python.org 8.8.8.8 1.1.1.1 9.9.9.9"
    _, counts = redact(text)
    assert counts == {"email": 2, "ipv4": 3}


# Pieces of PII-like text, separated by spaces or punctuation. (Text glued to PII with
# no separator at all, like "555-123-4567AKIA…", can turn into a match once the PII
# becomes "[PHONE]": the bracket starts a new word. We leave that case out here.)
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    "a", "1", "23", "456", "7890", "x@y.org", "8.8.8.8", "10.0.0.1", "(555) 123-4567",
    "555-123-4567", "+44 20 7946 0958", AWS_KEY, SK_KEY, "sk-", "0x1F", "3.11.7",
    f"{AWS_KEY}.bob@python.org", "user@example.com", "(8.8.4.4)", "ann@python.org.",
]), max_size=12).flatmap(lambda pieces: st.lists(
    st.sampled_from([" ", "\n", ", ", ". ", "; ", " @ ", " - ", " + "]),
    min_size=len(pieces), max_size=len(pieces)).map(
    lambda seps: "".join(p + s for p, s in zip(pieces, seps)))))
def test_redacted_text_holds_no_pii(text):
    redacted, counts = redact(text)
    assert not list(find_pii(redacted))
    assert sum(counts.values()) == len(list(find_pii(text)))


# --- the scan report --------------------------------------------------------------


def test_scan_reports_counts_locations_and_masks_values():
    docs = [
        ("a.txt", "hello\nwrite to guido@python.org\n"),
        ("b.txt", "nothing here"),
        ("c.py", f"KEY = '{AWS_KEY}'  # 8.8.8.8"),
    ]
    report = scan(docs, samples_per_type=5)
    assert report.documents == 3 and report.documents_with_pii == 2
    assert report.counts == {"email": 1, "aws_access_key": 1, "ipv4": 1}
    (email,) = [f for f in report.samples if f.type == "email"]
    assert (email.location, email.line, email.column) == ("a.txt", 2, 10)
    assert "guido@python.org" not in email.masked and email.masked.startswith("gu")
    text = report.format()
    assert "a.txt:2:10" in text and AWS_KEY not in text
    assert json.loads(json.dumps(report.to_dict()))["counts"]["email"] == 1


def test_scan_keeps_only_a_few_samples_per_type():
    report = scan([("x", " ".join(f"u{i}@python.org" for i in range(10)))],
                  samples_per_type=3)
    assert report.counts["email"] == 10 and len(report.samples) == 3


def test_mask_hides_all_but_two_characters():
    assert mask("secretvalue") == "se********"


@pytest.mark.slow
def test_stdlib_holds_no_secrets_or_phones():
    """False positives on real Python code: the default corpus has none of these."""
    (source,) = open_sources(["stdlib"])
    report = scan((d.path, d.text) for d in source.documents())
    assert report.documents > 700
    assert set(report.counts) <= {"email", "ipv4"}  # real author addresses
    assert report.counts["ipv4"] <= 10  # a few four-part version numbers at most


# --- provenance -------------------------------------------------------------------


def test_manifest_records_sources_cleaning_and_warns_on_unknown_license():
    a = SourceRecord("stdlib", "stdlib", "PSF-2.0")
    a.add("os.py", "import sys\n")
    a.add("re.py", "import enum\n")
    a.exact_duplicates, a.kept_documents, a.kept_bytes = 1, 1, 11
    a.redacted.update({"email": 2})
    b = SourceRecord("notes/", "local", "unknown")
    b.add("n.txt", "hi")
    b.empty = 1
    manifest = build_manifest([a, b], {"vocab_size": 512}, {"x.bin": "00"})
    assert manifest["sources"][0]["documents"] == 2
    assert manifest["sources"][0]["bytes"] == 23
    assert manifest["totals"]["removed"] == {
        "empty": 1, "exact_duplicates": 1, "near_duplicates": 0}
    assert manifest["totals"]["redacted"] == {"email": 2}
    assert len(manifest["warnings"]) == 1 and "notes/" in manifest["warnings"][0]
    assert {"python", "numpy", "regex", "llm_reference"} <= set(
        manifest["tools"])
    assert manifest["settings"] == {"vocab_size": 512}
    assert not any("time" in key or "date" in key for key in manifest)
    json.dumps(manifest)  # serializable


def test_content_hash_depends_on_paths_and_texts_only():
    def record(*docs):
        r = SourceRecord("s", "local", "MIT")
        for path, text in docs:
            r.add(path, text)
        return r.to_dict()["content_sha256"]

    assert record(("a", "x"), ("b", "y")) == record(("a", "x"), ("b", "y"))
    assert record(("a", "x"), ("b", "y")) != record(("a", "x"), ("b", "z"))
    assert record(("a", "xb"), ("", "y")) != record(("a", "x"), ("b", "y"))
