"""Compliance: scrub personal data and secrets, and record where every byte came from.

Two jobs before text reaches a model:

1. **PII redaction.** A model can memorise and repeat what it was trained on, so
   emails, public IP addresses, phone numbers and credentials are replaced by plain
   placeholders such as `[EMAIL]`. Placeholders are ordinary text on purpose: a string
   like `<|email|>` would look like a special token to the tokenizer. Each type is
   found by a regular expression and, where a pattern alone is too loose, a second
   check (`PiiRule.accept`) that keeps false positives on Python source low. Regular
   expressions have limits: names, postal addresses, IPv6 and passwords in arbitrary
   assignments go unseen, and a four-part version number such as 7.1.4.34 is taken
   for an IP address.
2. **Provenance.** `build_manifest` writes down each source, its license, a hash of its
   content, what cleaning removed and what redaction replaced, the settings and the
   tool versions. It carries no timestamp, so the same inputs give the same bytes.

`scan` runs the same detectors without changing anything and reports counts and
sample locations; `release` uses it to check what ships with a model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import ipaddress
import platform
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import regex

from . import __version__

# Domains and networks set aside for documentation and tests (RFC 2606, RFC 5737) are
# nobody's personal data: `is_global` already excludes private, loopback, link-local,
# shared (100.64/10), reserved and documentation networks; we also skip multicast.
RESERVED_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
RESERVED_EMAIL_TLDS = (".example", ".test", ".invalid", ".localhost")


def _public_email(address: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    return not (domain.endswith(RESERVED_EMAIL_TLDS)
                or any(domain == d or domain.endswith("." + d)
                       for d in RESERVED_EMAIL_DOMAINS))


def _public_ipv4(address: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(address)  # rejects 999.1.1.1 and leading zeros
    except ipaddress.AddressValueError:
        return False
    return ip.is_global and not ip.is_multicast


def _phone_digits(number: str) -> bool:
    """E.164 allows at most 15 digits; fewer than 10 is more likely not a phone."""
    return 10 <= sum(c.isdigit() for c in number) <= 15


def _random_looking(key: str) -> bool:
    """Real keys mix upper case, lower case and digits; `sk-learn-style-names` don't."""
    body = key[3:]
    return (any(c.isupper() for c in body) and any(c.islower() for c in body)
            and any(c.isdigit() for c in body))


@dataclass
class PiiRule:
    """One kind of personal data or secret: how to find it and what replaces it."""

    name: str  # the type, as counted in reports
    pattern: str  # a regular expression (the `regex` module's syntax) for candidates
    placeholder: str
    accept: Callable[[str], bool] = lambda match: True  # a second look at a candidate

    def __post_init__(self) -> None:
        self.compiled = regex.compile(self.pattern)


RULES = (
    PiiRule("private_key",
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?-----END[A-Z ]*PRIVATE KEY-----",
            "[PRIVATE_KEY]"),
    PiiRule("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", "[SECRET]"),
    # `\K` drops the key's name from the match: only the 40-character value goes.
    PiiRule("aws_secret_key",
            r"(?i:aws_?secret_?access_?key)\W{0,3}[:=]\s*[\"']?\K"
            r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])", "[SECRET]"),
    PiiRule("github_token",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
            "[SECRET]"),
    PiiRule("slack_token", r"\bxox[abeoprs]-[A-Za-z0-9-]{10,}", "[SECRET]"),
    PiiRule("stripe_key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b", "[SECRET]"),
    PiiRule("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",
            "[SECRET]"),
    PiiRule("sk_api_key", r"\bsk-[A-Za-z0-9_-]{20,}", "[SECRET]", _random_looking),
    PiiRule("email",
            r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
            r"\.[A-Za-z]{2,}\b",
            "[EMAIL]", _public_email),
    # Four dotted numbers, not part of a longer dotted run (OIDs, 1.2.3.4.5 versions,
    # 1.0.0.127.in-addr.arpa) and not named a section or version ("section 8.2.4.1").
    PiiRule("ipv4",
            r"(?<![\w.])(?<!(?i:sections?|versions?|releases?)\W{0,2})"
            r"(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\w)", "[IPV4]", _public_ipv4),
    # (555) 123-4567, 555-123-4567, 555.123.4567 (one separator throughout), or an
    # international +CC number in groups; a bare run of digits is never a phone here.
    PiiRule("phone",
            r"(?<![\w.+-])(?:"
            r"(?:\+?1[ .-])?"
            r"(?:\(\d{3}\) ?\d{3}-\d{4}|\d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4})"
            r"|\+\d{1,3}(?:[ .-]\(?\d{1,8}\)?){2,5}"
            r")(?![\w.-]?\d)", "[PHONE]", _phone_digits),
)


def find_pii(text: str) -> Iterator[tuple[PiiRule, regex.Match]]:
    """Yield the accepted matches of every rule, left to right, never overlapping.

    Each rule scans the text on its own (one pattern per rule is several times faster
    than one big alternation), and we merge their matches: the one that starts first
    wins (at the same start, the rule listed first in `RULES`); every rule then
    resumes after the winner, so a match hidden inside a loser is still found.
    """
    def next_match(rule: PiiRule, pos: int) -> regex.Match | None:
        for match in rule.compiled.finditer(text, pos):
            if rule.accept(match.group()):
                return match
        return None

    pending = [next_match(rule, 0) for rule in RULES]  # each rule's next match
    while any(pending):
        _, first = min((m.start(), i) for i, m in enumerate(pending) if m)
        match = pending[first]
        yield RULES[first], match
        pending = [next_match(RULES[i], match.end()) if m and m.start() < match.end()
                   else m for i, m in enumerate(pending)]


def redact(text: str) -> tuple[str, Counter[str]]:
    """Replace each piece of PII in `text` by its placeholder; count them by type."""
    pieces, counts, end = [], Counter(), 0
    for rule, match in find_pii(text):
        pieces += [text[end:match.start()], rule.placeholder]
        end = match.end()
        counts[rule.name] += 1
    pieces.append(text[end:])
    return "".join(pieces), counts


# --- scanning without changing anything --------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Where one piece of PII sits; the value itself is masked."""

    type: str
    location: str  # a file or document path
    line: int
    column: int
    masked: str  # e.g. "gu********" for guido@python.org

    def __str__(self) -> str:
        return f"{self.location}:{self.line}:{self.column}: {self.type} {self.masked}"


@dataclass
class PiiReport:
    """Counts per type, plus the first few locations of each type."""

    documents: int = 0
    documents_with_pii: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    samples: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "documents": self.documents,
            "documents_with_pii": self.documents_with_pii,
            "counts": dict(sorted(self.counts.items())),
            "samples": [vars(f) for f in self.samples],
        }

    def format(self) -> str:
        """A short human-readable report."""
        lines = [f"scanned {self.documents} document(s); "
                 f"{self.documents_with_pii} contain PII"]
        lines += [f"  {name:<16}{n:>8}" for name, n in sorted(self.counts.items())]
        lines += [f"  at {finding}" for finding in self.samples]
        return "\n".join(lines)


def mask(value: str) -> str:
    return value[:2] + "*" * min(len(value) - 2, 8)


def scan(items: Iterable[tuple[str, str]], samples_per_type: int = 3) -> PiiReport:
    """Find PII in `(location, text)` pairs without changing them."""
    report = PiiReport()
    for location, text in items:
        report.documents += 1
        found = False
        for rule, match in find_pii(text):
            found = True
            report.counts[rule.name] += 1
            if report.counts[rule.name] <= samples_per_type:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
                report.samples.append(
                    Finding(rule.name, location, line, column, mask(match.group())))
        report.documents_with_pii += found
    return report


# --- provenance -----------------------------------------------------------------


@dataclass
class SourceRecord:
    """What one source contributed, and what cleaning did to it."""

    id: str
    kind: str
    license: str
    documents: int = 0
    bytes: int = 0
    empty: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    kept_documents: int = 0
    kept_bytes: int = 0
    redacted: Counter[str] = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)
    sha256: str | None = None  # the pin of a downloaded file
    _content: Any = field(default_factory=hashlib.sha256, repr=False)

    def add(self, path: str, text: str) -> None:
        """Count a document read from the source and fold it into the content hash."""
        data = text.encode("utf-8")
        self.documents += 1
        self.bytes += len(data)
        self._content.update(f"{path}\0{len(data)}\0".encode() + data)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "license": self.license,
            # sha256 over (path, length, text) of every document read, in order
            "content_sha256": self._content.hexdigest(),
            "download_sha256": self.sha256,
            "documents": self.documents,
            "bytes": self.bytes,
            "removed": {"empty": self.empty, "exact_duplicates": self.exact_duplicates,
                        "near_duplicates": self.near_duplicates},
            "redacted": dict(sorted(self.redacted.items())),
            "kept": {"documents": self.kept_documents, "bytes": self.kept_bytes},
            "skipped_files": self.skipped_files,
        }


def tool_versions() -> dict[str, str]:
    """Versions of everything that shapes the prepared data."""
    versions = {"python": platform.python_version(), "llm_reference": __version__}
    for package in ("numpy", "regex"):
        versions[package] = importlib.metadata.version(package)
    return versions


def license_warnings(records: Iterable[SourceRecord]) -> list[str]:
    return [f"source {r.id!r} has no declared license: check its terms before "
            "training on it or releasing a model (declare it with --license)"
            for r in records if r.license == "unknown"]


def build_manifest(records: list[SourceRecord], settings: dict,
                   outputs: dict[str, str]) -> dict:
    """The provenance manifest: sources, cleaning, redaction, settings, tools, outputs.

    No creation time on purpose: re-running `prepare` on the same inputs must give a
    byte-identical manifest (the file's own mtime says when it was made).
    """
    total_redacted = sum((r.redacted for r in records), Counter())
    return {
        "format": "llm-reference-manifest/1",
        "sources": [r.to_dict() for r in records],
        "totals": {
            "documents": sum(r.documents for r in records),
            "bytes": sum(r.bytes for r in records),
            "removed": {kind: sum(getattr(r, kind) for r in records)
                        for kind in ("empty", "exact_duplicates", "near_duplicates")},
            "redacted": dict(sorted(total_redacted.items())),
            "kept_documents": sum(r.kept_documents for r in records),
            "kept_bytes": sum(r.kept_bytes for r in records),
        },
        "warnings": license_warnings(records),
        "settings": settings,
        "tools": tool_versions(),
        "outputs_sha256": outputs,
    }
