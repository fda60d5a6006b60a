"""Secrets out, text in: redaction with detect-secrets' plugins, for exports, HTML trial pages and run.json.

Every built-in detect-secrets plugin runs except the ones that flag ordinary text: the high-entropy string
plugins (git hashes, base64 test data, UUIDs) and public IP addresses. Four small plugins in detect-secrets'
own `RegexBasedDetector` form add what it has no plugin for: Hugging Face tokens, OpenAI-style `sk-` keys of
every generation (detect-secrets only knows the legacy `T3BlbkFJ` ones), `Authorization: Bearer` values and
credentials in URL query strings. The keyword plugin (`api_key`, `password`, `secret`, ...) runs on quoted values
(`"api_key": "..."`, `password = "..."`) and on unquoted config values (`api_key: ...`, `PASSWORD=...`); its
findings pass detect-secrets' heuristic filters, and unquoted ones must also look like a literal credential (one
word of 8+ characters with a letter and a digit) so that code such as `password = getpass()` is kept.
A private key (PEM, OpenSSH, PGP, PuTTY) is redacted as a whole block, from its BEGIN line to its END line.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import KeywordDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector

REDACTED = "[REDACTED]"
# plugins whose findings are mostly ordinary text in coding trajectories
DISABLED = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}


class HuggingFaceTokenDetector(RegexBasedDetector):
    """Hugging Face access tokens (`hf_` and 34 letters or digits)."""

    secret_type = "Hugging Face Token"
    denylist = [re.compile(r"(?<![A-Za-z0-9_])(hf_[A-Za-z0-9]{20,})")]


class OpenAIKeyDetector(RegexBasedDetector):
    """OpenAI-style keys: `sk-...`, `sk-proj-...`, `sk-svcacct-...` (and other vendors' `sk-` keys)."""

    secret_type = "OpenAI-style Key"
    denylist = [re.compile(r"(?<![A-Za-z0-9_-])(sk-[A-Za-z0-9_-]{20,})")]


class BearerTokenDetector(RegexBasedDetector):
    """`Authorization: Bearer <token>` (and `Authorization: Basic|Token <value>`): the value needs a digit."""

    secret_type = "Authorization Header"
    denylist = [re.compile(r"(?i)\bBearer\s+((?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{8,}=*)"),
                re.compile(r"(?i)\bAuthorization[\"']?\s*[:=]\s*[\"']?(?:Basic|Token)\s+([A-Za-z0-9._~+/-]{8,}=*)")]


class UrlQueryCredentialDetector(RegexBasedDetector):
    """Credentials passed in a URL's query string (`?access_token=...`, `&api_key=...`)."""

    secret_type = "URL Query Credential"
    denylist = [re.compile(r"(?i)[?&](?:access_token|auth_token|private_token|token|api_?key|client_secret|secret"
                           r"|password|passwd)=([^&\s#\"'<>]{8,})")]


CUSTOM = (HuggingFaceTokenDetector, OpenAIKeyDetector, BearerTokenDetector, UrlQueryCredentialDetector)
# a private key goes whole: from its header (PrivateKeyDetector's patterns, or any `BEGIN ... PRIVATE KEY`) to its
# END line, or, cut short, to the end of the key-looking text (escaped newlines of a JSON string included); a header
# with no key after it (a mention in code or prose) stays
KEY_HEADERS = [*PrivateKeyDetector.denylist, re.compile(r"BEGIN [A-Z0-9 ]*PRIVATE KEY")]
KEY_REST = re.compile(r"(?:[A-Za-z-]+: [^\n]*|[A-Za-z0-9+/=\s\\:,.-])*?"
                      r"(?:-+ ?END [A-Z0-9 ]*-+|(?=[^A-Za-z0-9+/=\s\\:,.-])|\Z)")
KEY_START = re.compile(r"[ A-Z0-9-]*(?::[^\n]*)?(?:\r?\n|(?:\\r)?\\n)")  # the header line's end
KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/]{16,}")
EDGES = " \t\r\n\"'=:"
JWT_SIGNATURE = re.compile(r"[A-Za-z0-9_=+/-]*")
KEYWORD_HINT = re.compile("|".join(keyword.DENYLIST), re.IGNORECASE)
QUOTED = keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
UNQUOTED = {keyword.FOLLOWED_BY_COLON_REGEX: 4, keyword.FOLLOWED_BY_EQUAL_SIGNS_REGEX: 5}
# a keyword's value that is a word, a constant's name or a placeholder, not a credential
WORDS = re.compile(r"[a-z]+(?:[-_.][a-z]+)*|[A-Z]+(?:_[A-Z0-9]+)+|(?i:your[-_].*|.*(?:\.\.\.|\u2026|xxxx).*)")
LITERAL = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9+/=._~!@#%^*-]{8,}")


@lru_cache(maxsize=1)
def plugins() -> tuple[BasePlugin, ...]:
    """detect-secrets' regex plugins (less DISABLED and the two handled apart) and ours, instantiated."""
    builtin = [cls for cls in get_mapping_from_secret_type_to_class().values()
               if cls.__name__ not in DISABLED and cls not in (KeywordDetector, PrivateKeyDetector)]
    return tuple(cls() for cls in sorted(builtin, key=lambda c: c.__name__)) + tuple(cls() for cls in CUSTOM)


def _private_key_spans(text: str) -> Iterator[tuple[int, int]]:
    for header in KEY_HEADERS:
        for match in header.finditer(text):
            start, line_end = match.start(), KEY_START.match(text, match.end())
            if line_end is None:
                continue  # the header and more text on its line: a mention, not a key
            end = KEY_REST.match(text, line_end.end()).end()
            while end > line_end.end() and text[end - 1].isspace():
                end -= 1
            if KEY_MATERIAL.search(text, line_end.end(), end):
                while start > 0 and text[start - 1] in "- ":
                    start -= 1
                yield start, end


def _plugin_spans(pattern: re.Pattern, text: str, values: set[str]) -> Iterator[tuple[int, int]]:
    """A plugin pattern's matches that the plugin reported: the secret group, or the whole match (less the
    quotes or spaces some patterns take around it) where the group is only the key's prefix (GitHub's `ghp`)."""
    for match in pattern.finditer(text):
        groups = [i for i in range(1, pattern.groups + 1) if match.group(i)]
        if not any(match.group(i) in values for i in groups or [0]):
            continue
        if not groups or match.start(groups[0]) == match.start():
            start, end = match.span()
            while start < end and text[start] in EDGES:
                start += 1
            while end > start and text[end - 1] in EDGES:
                end -= 1
            yield start, end
        else:
            yield from (match.span(i) for i in groups)


def _embedded(start: int, end: int, text: str) -> bool:
    """A match that is part of a longer word (a hash, base64 data) is not a key."""
    return (start > 0 and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum())


def _placeholder(value: str) -> bool:
    return heuristic.is_templated_secret(value) or heuristic.is_prefixed_with_dollar_sign(value)


def _ordinary(value: str, name: str) -> bool:
    """detect-secrets' heuristic filters for keyword findings (placeholders, UUIDs, sequences, values of `*_id`
    names), and words, constants' names and placeholders."""
    return (_placeholder(value) or heuristic.is_not_alphanumeric_string(value) or heuristic.is_potential_uuid(value)
            or heuristic.is_sequential_string(value) or heuristic.is_likely_id_string(value, f"{name} = {value}")
            or any(c.isspace() for c in value) or REDACTED in value or len(value) < 4 or bool(WORDS.fullmatch(value)))


def _name(line: str, match: re.Match) -> tuple[int, str]:
    """Where the keyword's whole name starts in the line (`client_secret`, `DB_PASSWORD`), and the name."""
    hit = KEYWORD_HINT.search(line, match.start(), match.end())
    start, end = (hit.start(), hit.end()) if hit else match.span()
    while start > 0 and (line[start - 1].isalnum() or line[start - 1] in "_-"):
        start -= 1
    while end < len(line) and (line[end].isalnum() or line[end] in "_-"):
        end += 1
    return start, line[start:end]


def _keyword_spans(line: str, offset: int) -> Iterator[tuple[int, int]]:
    """The keyword plugin's patterns, every match in the line (the plugin itself reports one per pattern)."""
    for patterns, literal_only in ((QUOTED, False), (UNQUOTED, True)):
        for pattern, group in patterns.items():
            for match in pattern.finditer(line):
                start, value = match.start(group), match.group(group) or ""
                name_at, name = _name(line, match)
                if literal_only:
                    value = value.split()[0].rstrip(";,)]}") if value.strip() else ""
                    if (not LITERAL.fullmatch(value) or (value.isidentifier() and "_" in value)
                            or heuristic.is_indirect_reference(line[name_at:])):  # code: a name, a call, a lookup
                        continue
                if value and not _ordinary(value, name):
                    yield offset + start, offset + start + len(value)


def secret_spans(text: str) -> list[tuple[int, int]]:
    """Where the secrets in `text` are (PEM blocks whole), merged and in order."""
    spans = list(_private_key_spans(text))
    for plugin in plugins():
        values = set(plugin.analyze_string(text))  # the plugin's own checks (JWTs must decode, ...)
        values.discard("")
        if not values:
            continue
        for pattern in getattr(plugin, "denylist", ()):
            for start, end in _plugin_spans(pattern, text, values):
                if isinstance(plugin, JwtTokenDetector):  # its pattern stops before the signature: take it too
                    end = JWT_SIGNATURE.match(text, end).end()
                if not (REDACTED in text[start:end] or _embedded(start, end, text) or _placeholder(text[start:end])):
                    spans.append((start, end))
    if KEYWORD_HINT.search(text):
        offset = 0
        for line in text.splitlines(keepends=True):
            if KEYWORD_HINT.search(line):
                spans += _keyword_spans(line, offset)
            offset += len(line)
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def redact(text: str) -> str:
    """`text` with every secret value replaced by [REDACTED]."""
    parts, at = [], 0
    for start, end in secret_spans(text):
        parts += [text[at:start], REDACTED]
        at = end
    return "".join(parts) + text[at:] if parts else text


def has_secret(text: str) -> bool:
    return bool(secret_spans(text))


def scrub(value: Any) -> Any:
    """Every string inside `value` (dicts, lists, tuples), redacted; keys are kept."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    return value


def holds_secret(value: Any) -> bool:
    """Whether any string inside `value` holds a secret."""
    if isinstance(value, str):
        return has_secret(value)
    if isinstance(value, (list, tuple)):
        return any(holds_secret(v) for v in value)
    if isinstance(value, dict):
        return any(holds_secret(v) for v in value.values())
    return False
