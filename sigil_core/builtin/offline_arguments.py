"""How the offline model fills a tool's arguments: from the request's text, by the tool's schema.

A language model reads "what is 17 plus 4 times 3" and writes ``{"expression": "17 + 4 * 3"}``.
The offline model has no language model, so it derives arguments by the schema: schema defaults
and enums first, then what the text contains for well-known parameter kinds (an arithmetic
expression, an IANA timezone or city, a HH:MM time, a number, a free-text query). When a
required parameter cannot be derived it returns None and the offline model does not call the
tool rather than call it with nonsense.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_WORD_OPS = [
    (r"\bmultiplied by\b", "*"), (r"\btimes\b", "*"), (r"\bdivided by\b", "/"),
    (r"\bover\b", "/"), (r"\bplus\b", "+"), (r"\bminus\b", "-"), (r"\bto the power of\b", "**"),
    (r"\bsquared\b", "**2"), (r"\bcubed\b", "**3"),
]
_EXPR_CHARS = r"[\d.\s+\-*/^()%×÷]"
_EXPR_RE = re.compile(rf"(?:sqrt|abs|round|log|exp|sin|cos|tan)?\(?[\d.]+{_EXPR_CHARS}*[\d.)]")
_OPERATOR_RE = re.compile(r"[+\-*/^%×÷]")
_IANA_RE = re.compile(
    r"\b(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)"
    r"/[A-Za-z_]+(?:/[A-Za-z_]+)?\b"
)
_TIME_RE = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_TEXT_PARAMS = {"query", "q", "text", "input", "prompt", "question", "topic", "search", "keywords",
                "message", "content"}


def extract_expression(text: str) -> str | None:
    """The longest arithmetic expression in ``text`` ('what is 17 plus 4 times 3' -> '17 + 4 * 3')."""
    normalised = text
    for pattern, op in _WORD_OPS:
        normalised = re.sub(pattern, f" {op} ", normalised, flags=re.IGNORECASE)
    best = None
    for match in _EXPR_RE.finditer(normalised):
        candidate = " ".join(match.group(0).split())
        # Balance parentheses the regex may have cut at either end.
        while candidate.count("(") > candidate.count(")") and candidate.startswith("("):
            candidate = candidate[1:]
        candidate = candidate.rstrip("(")
        if candidate.count("(") != candidate.count(")"):
            continue
        if not _OPERATOR_RE.search(candidate.lstrip("-")) and "(" not in candidate:
            continue
        if best is None or len(candidate) > len(best):
            best = candidate
    return best


@functools.lru_cache(maxsize=1)
def _zones_by_city() -> dict[str, str]:
    from zoneinfo import available_timezones

    out: dict[str, str] = {}
    for zone in sorted(available_timezones()):
        if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "US/")):
            out.setdefault(zone.rsplit("/", 1)[1].replace("_", " ").lower(), zone)
    return out


def extract_timezones(text: str) -> list[str]:
    """IANA names in ``text``, in order: explicit ones, then cities ('Tokyo' -> 'Asia/Tokyo')."""
    found: list[str] = [m.group(0) for m in _IANA_RE.finditer(text)]
    cities = _zones_by_city()
    words = re.findall(r"[A-Z][a-zA-Z]+(?:[ _][A-Z][a-zA-Z]+)?", text)
    for word in words:
        for candidate in (word, word.split()[0]):
            zone = cities.get(candidate.replace("_", " ").lower())
            if zone and zone not in found:
                found.append(zone)
                break
    if re.search(r"\b(?:UTC|GMT)\b", text) and "UTC" not in found:
        found.append("UTC")
    return found


def _from_text(name: str, spec: dict[str, Any], text: str, state: dict[str, Any]) -> Any:
    kind = spec.get("type")
    key = name.lower()
    if kind in ("integer", "number"):
        numbers = _NUMBER_RE.findall(text)
        if not numbers:
            return None
        value = float(numbers[0])
        return int(value) if kind == "integer" else value
    if kind not in (None, "string"):
        return None
    if key in ("expression", "expr", "formula", "calculation", "math"):
        return extract_expression(text)
    if "timezone" in key or key in ("tz", "zone"):
        zones = state.setdefault("zones", extract_timezones(text))
        # source/target pairs take the zones in the order the text names them
        index = state.get("zone_index", 0)
        state["zone_index"] = index + 1
        return zones[index] if index < len(zones) else None
    if key in ("time", "clock", "hhmm"):
        match = _TIME_RE.search(text)
        return f"{int(match.group(1)):02d}:{match.group(2)}" if match else None
    if key in _TEXT_PARAMS:
        return text.strip()[:500] or None
    return None


def _fallback(name: str, spec: dict[str, Any]) -> Any:
    if "default" in spec:
        return spec["default"]
    if spec.get("enum"):
        return spec["enum"][0]
    if spec.get("type") == "boolean":
        return False
    if "timezone" in name.lower():
        return "UTC"
    return None


def propose_arguments(schema: dict[str, Any], text: str) -> dict[str, Any] | None:
    """Arguments for ``schema`` derived from ``text``, or None when a required one is unknown."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    args: dict[str, Any] = {}
    state: dict[str, Any] = {}
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            spec = {}
        value = _from_text(name, spec, text, state)
        if value is not None:
            args[name] = value
            continue
        if name in required:
            value = _fallback(name, spec)
            if value is None:
                return None
            args[name] = value
    return args


_SPECIFIC_KEYS = ("expression", "expr", "formula", "calculation", "math", "time", "clock", "hhmm")


def specific_parameters(schema: dict[str, Any], text: str) -> list[str]:
    """The parameters the text fills through a specific extractor (an arithmetic expression, a
    timezone named in the text, a HH:MM time): a sign the tool is made for the request, unlike
    a number or free text, which almost any text contains."""
    found = []
    state: dict[str, Any] = {}
    for name, spec in (schema.get("properties") or {}).items():
        key = name.lower()
        if key not in _SPECIFIC_KEYS and "timezone" not in key and key not in ("tz", "zone"):
            continue
        if _from_text(name, spec if isinstance(spec, dict) else {}, text, state) is not None:
            found.append(name)
    return found
