"""Record and replay: every LLM exchange and tool result of a run, in a cassette.

A run records, next to its session, ``outputs/sessions/<id>.cassette.jsonl``: a header (the
task, agent, budget and provider), then one line per LLM call (the request's fingerprint and
canonical form -> the answer: text, structured value, usage, stop reason) and one per tool
result. It is on by default for real providers (``llm.cassette: auto``; ``always`` records
offline runs too, ``never`` turns it off). Values of API keys, tokens and passwords from the
environment and the config are replaced by ``[REDACTED]`` before anything is written.

:class:`ReplayProvider` serves the recorded answers by fingerprint, with no network: ``sigil
replay SESSION`` re-runs the task against it and compares route, plan, step outputs, contract
result and final output with the original; ``--strict`` fails on the first request that has no
recorded answer and shows how it differs from the nearest recorded one (a prompt change shows up
this way). The fingerprint covers the provider, model, system prompt, messages, schema and
temperature; ``max_tokens`` is left out because the budget caps it differently run to run.

For tests, :func:`sigil_replay` is a pytest fixture (in :mod:`sigil_core.testing`): record
once with a real model, commit the cassette, and replay it in CI::

    def test_lead_agent(sigil_replay):
        outcome = sigil_replay("tests/cassettes/lead.cassette.jsonl")
        assert outcome.result.output["tier"] == "hot"
"""

from __future__ import annotations

import collections
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from .errors import LLMError, StorageError, UsageError
from .files import JsonlAppender

if TYPE_CHECKING:
    from .llm import LLMRequest, LLMResponse

CASSETTE_SUFFIX = ".cassette.jsonl"
REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)


# --------------------------------------------------------------------------- fingerprints


def canonical_request(provider: str, request: LLMRequest) -> dict[str, Any]:
    """What identifies a request (see the module docstring for what is left out and why)."""
    return {"provider": provider, "model": request.model, "system": request.system,
            "messages": request.messages, "schema": request.schema,
            "temperature": request.temperature}


def fingerprint(canonical: dict[str, Any]) -> str:
    # orjson, as for events: recording is on the path of every call (see bench/replay_bench.py)
    data = orjson.dumps(canonical, default=str, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:32]


def cassette_path(folder: Path, session_id: str) -> Path:
    return folder / f"{session_id}{CASSETTE_SUFFIX}"


# --------------------------------------------------------------------------- recording


def secret_values(config: Any) -> list[str]:
    """Values that must never be written: env vars and config keys named like secrets."""
    found = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and _SECRET_NAME.search(key) and len(node) >= 6:
            found.add(node)

    walk(getattr(config, "extra", None) or {})
    return sorted(found, key=len, reverse=True)


def should_record(config: Any, provider_name: str) -> bool:
    mode = getattr(config.llm, "cassette", "auto")
    return mode == "always" or (mode == "auto" and provider_name not in ("offline", "replay"))


class CassetteRecorder:
    """Appends a run's exchanges to its cassette, whole lines only, secrets redacted."""

    def __init__(self, path: Path, secrets: list[str], header: dict[str, Any]) -> None:
        self.path = path
        self.secrets = secrets
        new = not path.exists() or path.stat().st_size == 0
        # Whole lines or nothing (a torn tail is cut on open); on a full disk, recording stops
        # and ``failure`` says why: the run ends with exit 4, not with an error mid-call.
        self._out: JsonlAppender | None = JsonlAppender(path)
        self.failure: StorageError | None = None
        if new:
            self._write({"kind": "header", **header})

    def _write(self, entry: dict[str, Any]) -> None:
        if self._out is None:
            if self.failure is not None:
                return  # recording stopped on a full disk; the run reports it once
            raise ValueError("the cassette is closed")
        line = orjson.dumps(entry, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
                            | orjson.OPT_NON_STR_KEYS)
        for secret in self.secrets:
            line = line.replace(secret.encode("utf-8"), REDACTED.encode())
        try:
            self._out.append(line.decode("utf-8"))
        except StorageError as exc:
            self.failure = exc
            self.close()

    def record_llm(self, provider: str, request: LLMRequest, response: LLMResponse) -> None:
        canonical = canonical_request(provider, request)
        usage = response.usage
        self._write({"kind": "llm", "fingerprint": fingerprint(canonical),
                     "purpose": request.purpose, "component": request.component,
                     "request": canonical,
                     "response": {"text": response.text, "data": response.data,
                                  "model": response.model, "stop_reason": response.stop_reason,
                                  "usage": {"input_tokens": usage.input_tokens,
                                            "output_tokens": usage.output_tokens,
                                            "model": usage.model,
                                            "cache_read_tokens": usage.cache_read_tokens,
                                            "cache_write_tokens": usage.cache_write_tokens}}})

    def record_tool(self, name: str, arguments: dict[str, Any], result: Any) -> None:
        from .resume import tool_key

        self._write({"kind": "tool", "key": tool_key(name, arguments), "name": name,
                     "arguments": arguments, "result": result})

    def record_memory(self, memory: dict[str, Any] | None) -> None:
        self._write({"kind": "memory", "memory": memory})

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


# --------------------------------------------------------------------------- replaying


@attrs.define
class Cassette:
    """A cassette read back: its header, LLM answers by fingerprint, tool results by call."""

    path: Path
    header: dict[str, Any]
    llm: list[dict[str, Any]]
    tools: dict[str, Any]
    #: The memories the run retrieved (a replay gets the same ones), if it recorded any.
    memory: dict[str, Any] | None = None
    memory_recorded: bool = False

    @classmethod
    def load(cls, path: Path) -> Cassette:
        if not path.is_file():
            raise UsageError(f"no cassette {path}: the session was not recorded (real providers "
                             "record by default; set llm.cassette: always to record offline "
                             "runs)")
        header: dict[str, Any] = {}
        llm: list[dict[str, Any]] = []
        tools: dict[str, Any] = {}
        memory: dict[str, Any] | None = None
        memory_recorded = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line of a run killed mid-write
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind == "header" and not header:
                header = entry
            elif kind == "llm" and "fingerprint" in entry and "response" in entry:
                llm.append(entry)
            elif kind == "tool" and "key" in entry:
                tools[entry["key"]] = entry.get("result")
            elif kind == "memory":
                memory, memory_recorded = entry.get("memory"), True
            elif kind not in ("header", "llm", "tool", "memory"):
                raise UsageError(f"{path}:{number} is not a cassette line")
        if not header.get("task"):
            raise UsageError(f"{path} is not a Sigil cassette (no header with the task)")
        return cls(path, header, llm, tools, memory, memory_recorded)


@attrs.define
class Mismatch:
    """A request the cassette has no answer for, and how it differs from the nearest one."""

    purpose: str
    component: str
    diff: str
    nearest_purpose: str | None

    def describe(self) -> str:
        where = (f" (nearest recorded: {self.nearest_purpose})" if self.nearest_purpose
                 else " (the cassette has no LLM calls)")
        return f"no recorded answer for the {self.component} request {self.purpose!r}{where}:" \
               f"\n{self.diff}"


class ReplayError(LLMError):
    """--strict replay met a request with no recorded answer."""

    code = "SYSTEM_004"
    recoverable = False


class ReplayProvider:
    """Serves a cassette's answers by request fingerprint (no network)."""

    name = "replay"
    priority = -1

    def __init__(self, cassette: Cassette, *, strict: bool = False) -> None:
        self.cassette = cassette
        self.strict = strict
        self.recorded_provider = cassette.header.get("provider") or "offline"
        self.answers: dict[str, collections.deque[dict[str, Any]]] = {}
        for entry in cassette.llm:
            self.answers.setdefault(entry["fingerprint"], collections.deque()).append(entry)
        self.last: dict[str, dict[str, Any]] = {}
        self.mismatches: list[Mismatch] = []
        self.served = 0
        self._last_request: tuple[Any, str, dict[str, Any]] | None = None

    def available(self, config: Any) -> bool:
        return True

    def _fingerprint(self, request: LLMRequest) -> tuple[str, dict[str, Any]]:
        # The gateway asks for an estimate, then for the answer, of the same request.
        if self._last_request is not None and self._last_request[0] is request:
            return self._last_request[1], self._last_request[2]
        canonical = canonical_request(self.recorded_provider, request)
        fp = fingerprint(canonical)
        self._last_request = (request, fp, canonical)
        return fp, canonical

    def _lookup(self, request: LLMRequest) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        fp, canonical = self._fingerprint(request)
        queue = self.answers.get(fp)
        if queue:
            # Identical requests are answered in the order they were recorded.
            entry = queue.popleft() if len(queue) > 1 else queue[0]
            self.last[fp] = entry
            return entry, canonical
        return self.last.get(fp), canonical

    def estimate_input_tokens(self, request: LLMRequest) -> int:
        from .constants import estimate_tokens

        entry, _ = self._lookup_peek(request)
        if entry is not None:
            usage = entry["response"]["usage"]
            return int(usage["input_tokens"] + (usage.get("cache_read_tokens") or 0)
                       + (usage.get("cache_write_tokens") or 0))
        return estimate_tokens(request.text()) + 4 * len(request.messages)

    def _lookup_peek(self, request: LLMRequest) -> tuple[dict[str, Any] | None, str]:
        fp, _ = self._fingerprint(request)
        queue = self.answers.get(fp)
        return (queue[0] if queue else self.last.get(fp)), fp

    async def complete(self, request: LLMRequest) -> LLMResponse:
        from .llm import LLMResponse
        from .model import TokenUsage

        entry, canonical = self._lookup(request)
        if entry is None:
            mismatch = self._mismatch(request, canonical)
            self.mismatches.append(mismatch)
            if self.strict:
                raise ReplayError(mismatch.describe(), context={"purpose": request.purpose})
            entry = mismatch_entry = self._nearest(canonical)[0]
            if mismatch_entry is None:
                raise ReplayError(mismatch.describe(), context={"purpose": request.purpose})
        self.served += 1
        assert entry is not None  # found, or the nearest one (checked above)
        answer = entry["response"]
        u = answer["usage"]
        usage = TokenUsage(u["input_tokens"], u["output_tokens"], model=u.get("model"),
                           cache_read_tokens=u.get("cache_read_tokens"),
                           cache_write_tokens=u.get("cache_write_tokens"))
        return LLMResponse(text=answer["text"], usage=usage, model=answer["model"],
                           data=answer.get("data"), stop_reason=answer.get("stop_reason"))

    def _nearest(self, canonical: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        text = _pretty(canonical)
        best, best_ratio, best_text = None, -1.0, ""
        for entry in self.cassette.llm:
            other = _pretty(entry["request"])
            ratio = difflib.SequenceMatcher(None, text, other, autojunk=False).quick_ratio()
            if ratio > best_ratio:
                best, best_ratio, best_text = entry, ratio, other
        return best, best_text

    def _mismatch(self, request: LLMRequest, canonical: dict[str, Any]) -> Mismatch:
        nearest, nearest_text = self._nearest(canonical)
        lines = list(difflib.unified_diff(nearest_text.splitlines(),
                                          _pretty(canonical).splitlines(),
                                          "recorded", "new request", lineterm="", n=1))
        if len(lines) > 60:
            lines = lines[:60] + [f"... ({len(lines) - 60} more diff lines)"]
        return Mismatch(request.purpose, request.component, "\n".join(lines),
                        nearest.get("purpose") if nearest else None)


def _pretty(canonical: dict[str, Any]) -> str:
    return json.dumps(canonical, sort_keys=True, ensure_ascii=False, indent=1, default=str)


# --------------------------------------------------------------------------- running a replay


@attrs.define
class ReplayOutcome:
    """What a replay gives back: the run's outcome and the requests it could not serve."""

    outcome: Any
    mismatches: list[Mismatch]
    session_id: str

    @property
    def result(self) -> Any:
        return self.outcome.result


async def replay(cassette: Cassette, config: Any, host: Any, *, strict: bool = False,
                 session: str | None = None, listeners: list[Any] | None = None
                 ) -> ReplayOutcome:
    """Run the cassette's task again against its recorded answers (no network, nothing
    recorded, no memories written)."""
    import uuid

    from .orchestrator import Orchestrator, RunOptions

    provider = ReplayProvider(cassette, strict=strict)
    config.llm.cassette = "never"
    orch = Orchestrator(config, host, listeners=listeners)
    orch.provider_override = provider
    orch.replay = cassette
    header = cassette.header
    session_id = session or f"replay_{header.get('session_id', 'cassette')}_{uuid.uuid4().hex[:6]}"
    outcome = await orch.run(RunOptions(task=header["task"], agent=header.get("agent"),
                                        budget=header.get("budget"), session=session_id[:128]))
    return ReplayOutcome(outcome, provider.mismatches, session_id)


def compare(original: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """Differences between two session results (route, plan, steps, contract, output)."""
    problems = []
    a, b = original.get("result") or {}, replayed.get("result") or {}
    route_keys = ("intent", "complexity", "reasoning_strategy")
    if {k: (a.get("route") or {}).get(k) for k in route_keys} != {
            k: (b.get("route") or {}).get(k) for k in route_keys}:
        problems.append("the route differs")
    steps_a = [s.get("name") for s in ((a.get("plan") or {}).get("steps") or [])]
    steps_b = [s.get("name") for s in ((b.get("plan") or {}).get("steps") or [])]
    if steps_a != steps_b:
        problems.append(f"the plan differs: {steps_a} -> {steps_b}")
    outs_a = {k: v.get("output") for k, v in (a.get("steps") or {}).items()}
    outs_b = {k: v.get("output") for k, v in (b.get("steps") or {}).items()}
    for name in sorted(set(outs_a) | set(outs_b)):
        if outs_a.get(name) != outs_b.get(name):
            problems.append(f"step {name}'s output differs")
    val_a, val_b = a.get("validation"), b.get("validation")
    if (val_a or {}).get("success") != (val_b or {}).get("success") or (
            (val_a or {}).get("failed_rules") != (val_b or {}).get("failed_rules")):
        problems.append("the contract result differs")
    if a.get("output") != b.get("output"):
        problems.append("the final output differs")
    return problems


# --------------------------------------------------------------------------- pytest fixture


def __getattr__(name: str) -> Any:
    # The fixture lives with the other fixtures (sigil_core.testing.fixtures, which needs
    # pytest); importing pytest here cost every run ~90 ms.
    if name == "sigil_replay":
        from .testing.fixtures import sigil_replay

        return sigil_replay
    raise AttributeError(name)
