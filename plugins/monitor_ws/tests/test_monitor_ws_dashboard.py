"""The browser dashboard, loaded in headless Chromium during a real run."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).parent))
from test_monitor_ws_run import (
    MonitorEnv,
    events_so_far,
    finish,
    hold_when,
    open_operations,
    wait_health,
)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")

SHOWN = """JSON.stringify({
  conn: document.getElementById('conn').textContent,
  sessions: [...document.querySelectorAll('#sessions li')].map(li => [li.dataset.session, li.dataset.alive]),
  session: document.getElementById('session-id').textContent,
  status: document.getElementById('session-status').textContent,
  budget: document.getElementById('budget-text').textContent,
  percent: document.getElementById('budget-bar').dataset.percent || null,
  tree: [...document.querySelectorAll('#tree li')].map(li => [li.dataset.label, li.dataset.status,
         li.parentElement.closest('li') ? li.parentElement.closest('li').dataset.label : null]),
  errors: [...document.querySelectorAll('#errors li')].map(li => li.textContent),
})"""


class Page:
    """A Chromium page driven over the DevTools protocol (with the websockets library)."""

    def __init__(self, ws) -> None:
        self.ws, self.ids = ws, itertools.count(1)

    async def evaluate(self, expression: str):
        n = next(self.ids)
        await self.ws.send(json.dumps({"id": n, "method": "Runtime.evaluate",
                                       "params": {"expression": expression,
                                                  "returnByValue": True}}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if msg.get("id") == n:
                return msg["result"]["result"].get("value")

    async def shown(self) -> dict:
        value = await self.evaluate(SHOWN)
        return json.loads(value) if value else {}

    async def wait(self, predicate, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        shown: dict = {}
        while time.monotonic() < deadline:
            shown = await self.shown()
            if shown and predicate(shown):
                return shown
            await asyncio.sleep(0.1)
        raise AssertionError(f"the dashboard never showed it; last: {shown}")


async def open_page(url: str, profile: Path) -> tuple[subprocess.Popen, Page]:
    proc = subprocess.Popen(  # noqa: ASYNC220 - test helper
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-extensions", "--no-first-run",
         "--disable-default-apps", "--disable-sync", "--mute-audio",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("Chromium did not start")
        await asyncio.sleep(0.1)
    port = port_file.read_text().split()[0]
    async with httpx.AsyncClient() as http:
        while True:
            pages = [t for t in (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                     if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
    ws = await connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
    return proc, Page(ws)


async def test_dashboard_shows_sessions_budget_tree_and_errors_during_a_run(tmp_path):
    env = MonitorEnv(tmp_path)
    env.serve()  # following the session files: what a stopped run wrote reaches the page
    chromium = None
    try:
        await wait_health(env)
        chromium, page = await open_page(f"http://127.0.0.1:{env.port}/", tmp_path / "profile")
        await page.wait(lambda s: s["conn"] == "live")
        run = env.orchestrate("sess_mon_web", env={"SIGIL_OFFLINE_LATENCY_MS": "150"})
        # During the run (held still once an operation below the root is in progress): the
        # session is listed as running, an operation is in progress.
        jsonl = env.sessions / "sess_mon_web.jsonl"
        hold_when(run, lambda: len(open_operations(events_so_far(jsonl))) >= 2)
        try:
            during = await page.wait(lambda s: ["sess_mon_web", "true"] in s["sessions"]
                                     and any(status == "running" for _, status, _ in s["tree"]))
        finally:
            run.send_signal(signal.SIGCONT)
        assert during["session"] == "sess_mon_web" and during["status"] == "running"
        code, _, err = await finish(run)
        assert code == 0, err
        final = json.loads((env.cwd / "outputs" / "sessions" / "sess_mon_web.json").read_text())
        total = final["summary"]["total_tokens"]
        after = await page.wait(lambda s: s["status"] == "finished"
                                and s["budget"].startswith(f"{total:,} / 256,000 tokens"))
        assert float(after["percent"]) == pytest.approx(100 * total / 256_000, abs=0.01)
        labels = {label: (status, parent) for label, status, parent in after["tree"]}
        assert labels["router/route_request"][0] == "done"
        assert labels["planner/create_plan"][0] == "done"
        # steps nest under the plan execution, as their parent_operation_id says
        steps = [lab for lab, (_, parent) in labels.items() if parent == "orchestrator/execute_plan"]
        assert steps and all(lab.startswith("reasoning/") for lab in steps)
        assert all(status != "running" for status, _ in labels.values())
        assert after["errors"] == []
        # An error reaches the page at once (a publisher feeds one into the session).
        async with connect(f"ws://127.0.0.1:{env.port}/monitoring/v1/ingest") as feed:
            await feed.send(json.dumps({"type": "publish", "events": [{
                "id": "log_web_err", "timestamp": "2099-01-01T00:00:00.000Z", "level": "error",
                "component": "tools", "operation": "websearch", "message": "Search failed",
                "session_id": "sess_mon_web", "correlation_id": "sess_mon_web",
                "operation_id": "op_web_err",
                "error_info": {"error_type": "ToolError", "error_message": "timeout",
                               "error_code": "TOOL_003", "recoverable": True}}]}))
        shown = await page.wait(lambda s: s["errors"])
        assert "tools/websearch: Search failed [TOOL_003]" in shown["errors"][0]
    finally:
        if chromium is not None:
            chromium.terminate()
            chromium.wait(10)
        env.cleanup()
