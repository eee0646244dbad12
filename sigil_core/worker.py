"""A resident worker that keeps the providers' SDKs imported, so a run does not pay their import
before its first request (``sigil worker start``).

Why. ``import anthropic`` costs about two seconds of CPU and ``import openai`` about one (see
preload.py). Importing in a background thread overlaps that with start-up, but start-up is
itself Python code holding the same interpreter lock, so the first request of a cold process
still waits for most of the import. The only way to pay it once for many runs is to keep a
process that has paid it: a fork server, as ``multiprocessing``'s ``forkserver`` start method
is. (An HTTP proxy process instead would split each run in two, its retries, events and budget
on the far side of a socket.)

How. ``sigil worker start`` starts ``python -m sigil_core.worker`` in its own session. It
loads the plugins, calls every provider's ``prepare()`` and waits for the imports, imports the
orchestrator, then listens on a Unix socket named after the Sigil home (Linux's abstract
namespace: no file to leave behind; only the same user may connect). When ``sigil orchestrate``
starts and finds a worker for its ``SIGIL_HOME``, it hands over its command line, working
folder, environment and standard streams (file descriptors, passed over the socket); the worker
forks, and the child *is* that run: the same code the command would run, with the caller's
files, variables and terminal, already warm. The caller forwards Ctrl-C and SIGTERM to the
child and exits with its exit code, so the command behaves as if it ran in-process.

What keeps it honest. The worker serves only the Python it runs on (the caller's
``sys.executable`` must match), and refuses, then exits, once a ``sigil*`` module it imported
has changed on disk (an upgrade or an edit): the caller then runs in-process as without a
worker. It exits after ``--idle-timeout`` seconds without a run (default 30 minutes) and on
``sigil worker stop``. With ``SIGIL_NO_WORKER=1`` a command never uses it.

Started by itself. A ``sigil orchestrate`` that ran in its own process (no worker served it)
starts one in the background as it exits (:func:`auto_start`), as Gradle's build daemon
starts with the first build: the run the user waited for pays nothing, the runs after it start
warm. Not when the ``CI`` variable is set (a one-off machine), nor with
``cli.worker.auto_start: false`` or ``SIGIL_WORKER_AUTO_START=0``; it exits after
``cli.worker.idle_timeout`` seconds idle. One worker per home: a lock file (``.worker.lock``
in the Sigil home) is taken before the warm-up, so two runs ending together start one worker.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["address", "auto_start", "delegate", "request", "serve"]

#: Commands handed to a worker (the ones that make LLM calls).
DELEGATED = frozenset({"orchestrate"})
DEFAULT_IDLE_S = 1800.0
#: Set in a forked run once its exit code is known (the caller hanging up is then no signal).
_DONE = threading.Event()
_MAX_REQUEST = 4 * 1024 * 1024


def supported() -> bool:
    """Fork servers with abstract Unix sockets and peer credentials: Linux."""
    return sys.platform.startswith("linux")


def _home() -> Path:
    from .files import sigil_home

    return sigil_home()


def address(home: Path | None = None) -> str:
    """The worker's socket for a Sigil home (and this user): an abstract-namespace name."""
    where = os.path.realpath(home or _home())
    digest = hashlib.sha256(where.encode()).hexdigest()[:24]
    return f"\0sigil-worker-{os.getuid()}-{digest}"


# --------------------------------------------------------------------------- wire format
# One JSON object per line each way; the run request carries the caller's stdin, stdout and
# stderr as SCM_RIGHTS file descriptors.


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = (json.dumps(message) + "\n").encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


class _Lines:
    """Reads newline-terminated JSON messages (and the descriptors sent with the first one)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []

    def read(self, with_fds: bool = False) -> dict[str, Any] | None:
        while b"\n" not in self.buffer:
            if with_fds and not self.fds:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 3)
                self.fds.extend(fds)
            else:
                data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
            if len(self.buffer) > _MAX_REQUEST:
                raise ValueError("request too large")
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        return message if isinstance(message, dict) else None


def request(message: dict[str, Any], home: Path | None = None, timeout: float = 5.0,
            reply: bool = True) -> dict[str, Any] | None:
    """Send one control message (``status``, ``stop``) to the worker and return its answer;
    None when no worker runs (or ``reply=False``: nothing is waited for)."""
    if not supported():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address(home))
            _send(sock, message)
            return _Lines(sock).read() if reply else None
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- the caller


def _stream_fds() -> list[int]:
    """The caller's fds 0-2 (a closed one replaced by /dev/null, so the run sees one too)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def delegate(argv: list[str]) -> int | None:
    """Run ``sigil ARGV`` in a worker's forked child and return its exit code; None when no
    worker serves this command (the caller then runs it in-process)."""
    if (not supported() or os.environ.get("SIGIL_NO_WORKER") or not argv
            or argv[0] not in DELEGATED):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address())
    except OSError:  # no worker for this home
        sock.close()
        return None
    with sock:
        lines = _Lines(sock)
        try:
            _send(sock, {"op": "run", "argv": argv, "cwd": os.getcwd(),
                         "env": dict(os.environ), "python": sys.executable}, _stream_fds())
            answer = lines.read()
        except (OSError, ValueError):
            return None
        if answer is None or "pid" not in answer:
            return None  # refused (stale worker, another Python): run in-process

        def forward(signum: int, _frame: Any) -> None:
            try:
                _send(sock, {"signal": signum})
            except OSError:
                pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, forward)
        # A Ctrl-C that came before (recorded by the early hook, see interrupts.py) counts.
        from .interrupts import first_signal

        early = first_signal()
        if early is not None:
            forward(early, None)
        while True:
            try:
                message = lines.read()
            except InterruptedError:
                continue
            except (OSError, ValueError):
                message = None
            if message is None:
                print("Error: the sigil worker's run ended without an exit status (killed?); "
                      "see `sigil worker status`", file=sys.stderr)
                return 1
            if "exit" in message:
                return int(message["exit"])


def auto_start(settings: Any, home: Path | None = None) -> int | None:
    """Start a worker for ``home`` in the background, after a run that ran in-process, when
    ``settings`` (the ``cli.worker`` config) allow it and none serves the home: the pid, or
    None. Costs the caller a look-up and a spawn (~5 ms); it does not wait for the worker."""
    import subprocess

    if (not supported() or not getattr(settings, "auto_start", False)
            or os.environ.get("SIGIL_NO_WORKER") or os.environ.get("CI")):
        return None
    home = home or _home()
    if request({"op": "status"}, home, timeout=1.0) is not None:
        return None
    env = {k: v for k, v in os.environ.items() if k != "SIGIL_NO_WORKER"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sigil_core.worker", "--home", str(home), "--idle-timeout",
             f"{float(settings.idle_timeout):g}"], stdin=subprocess.DEVNULL,
            # Nothing of the caller's: a pipe the worker kept open would keep whatever reads
            # the caller's output (a shell's $(...), a CI step) waiting for 30 minutes.
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=env, close_fds=True)
    except OSError:
        return None
    return proc.pid


def _take_lock(home: Path) -> int | None:
    """The home's worker lock (an open descriptor holding an exclusive ``flock``), or None
    when another worker holds it (serving, or still warming up)."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / ".worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


# --------------------------------------------------------------------------- the worker


class _Worker:
    def __init__(self, home: Path, idle_timeout: float) -> None:
        self.home = home
        self.idle_timeout = idle_timeout
        self.started = time.time()
        self.runs = 0
        #: When the last run was forked (or the worker started): what the idle timeout counts.
        self.last_run = time.monotonic()
        self.preloaded: list[str] = []
        self.watched: dict[str, float] = {}
        #: The home's worker lock (see _take_lock); a forked run closes its copy.
        self.lock_fd: int | None = None

    def warm_up(self) -> None:
        """Import what a run imports, and every provider's SDK (through ``prepare()``)."""
        import importlib

        from . import cli, orchestrator  # noqa: F401 - imported to be inherited warm
        from . import preload as preload_module
        from .files import disabled_plugins
        from .plugins import PluginHost

        host = PluginHost(disabled=disabled_plugins()).load()
        for provider in host.registry("providers").values():
            prepare = getattr(provider, "prepare", None)
            if callable(prepare):
                prepare()
        # The memory embedder's model too (all-MiniLM: ~0.2 s a run otherwise): an embedder
        # that keeps what it loaded per process (minilm does) hands it to every forked run.
        try:
            from .config import load_config
            from .memory import preload_embedder

            host.configure(config := load_config())
            model = preload_embedder(config, host)
            if model is not None:
                model.join()
        except Exception:  # noqa: BLE001, S110 - a run meets the problem and reports it
            pass
        # What every run imports on its way (each kind of plugin object, the validator of
        # structured answers, the daily log's library), so the first forked run does not
        # import it either; later runs' other imports are learnt (learn()).
        from .plugins import REGISTRY_KINDS

        # Not tools: registering them may connect to the configured MCP servers, which a
        # worker must not start from wherever it was started.
        for kind in sorted(set(REGISTRY_KINDS) - {"tools"}):
            try:
                host.registry(kind)
            except Exception:  # noqa: BLE001, S112 - a run meets the problem and reports it
                continue
        for name in ("fastjsonschema", "jsonschema", "loguru"):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - a run meets the problem and reports it
                continue
        for name, loading in list(preload_module._PRELOADS.items()):
            try:
                loading.get()
                self.preloaded.append(name)
            except Exception:  # noqa: BLE001, S112 - a run meets the error itself
                continue
        # A forked run finds its SDK imported (not "being preloaded"): start afresh.
        preload_module._PRELOADS.clear()
        for module in list(sys.modules.values()):
            self.watch(module)

    def learn(self, names: list[str]) -> None:
        """Import what a run imported and this process had not (parents first), so the next
        run finds it imported too: what a run needs is learnt from runs, not listed here."""
        import importlib

        for name in sorted((n for n in names if isinstance(n, str)), key=lambda n: n.count(".")):
            if name in sys.modules:
                continue
            try:
                module = importlib.import_module(name)
            except BaseException:  # noqa: BLE001, S112 - not importable alone: the run imports it
                continue
            self.watch(module)

    def watch(self, module: Any) -> None:
        path = getattr(module, "__file__", None)
        if getattr(module, "__name__", "").startswith("sigil") and path:
            try:
                self.watched[path] = os.stat(path).st_mtime
            except OSError:
                pass

    def stale(self) -> str | None:
        for path, mtime in self.watched.items():
            try:
                if os.stat(path).st_mtime != mtime:
                    return path
            except OSError:
                return path
        return None

    def serve(self) -> int:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address(self.home))
        except OSError:
            print(f"a sigil worker already serves {self.home}", flush=True)
            return 1
        listener.listen(16)
        # Children are reaped by the kernel; each reports its own exit code to its caller.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"ready {os.getpid()}", flush=True)
        self.last_run = time.monotonic()  # the warm-up is not idle time
        while True:
            # Idle means without a run: status questions do not keep the worker alive.
            left = self.idle_timeout - (time.monotonic() - self.last_run)
            if left <= 0:
                return 0
            listener.settimeout(left)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return 0
            except InterruptedError:
                continue
            with conn:
                if self.handle(conn, listener) == "stop":
                    return 0

    def handle(self, conn: socket.socket, listener: socket.socket) -> str | None:
        import struct

        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        lines = _Lines(conn)
        conn.settimeout(10)
        try:
            message = lines.read(with_fds=True)
        except (OSError, ValueError):
            message = None
        try:
            if message is None or uid != os.getuid():
                return None
            op = message.get("op")
            if op == "status":
                _send(conn, {"pid": os.getpid(), "python": sys.executable, "runs": self.runs,
                             "preloaded": self.preloaded, "home": str(self.home),
                             "up_s": round(time.time() - self.started, 1),
                             "idle_timeout_s": self.idle_timeout})
            elif op == "learn":
                self.learn(message.get("modules") or [])
            elif op == "stop":
                _send(conn, {"stopped": os.getpid()})
                return "stop"
            elif op == "run":
                changed = self.stale()
                if message.get("python") != sys.executable:
                    _send(conn, {"refused": "another Python"})
                elif changed is not None:
                    _send(conn, {"refused": f"{changed} changed since the worker started"})
                    return "stop"
                elif len(lines.fds) == 3:
                    self.runs += 1
                    self.last_run = time.monotonic()
                    self.fork_run(conn, listener, message, lines.fds)
            return None
        finally:
            for fd in lines.fds:
                os.close(fd)

    def fork_run(self, conn: socket.socket, listener: socket.socket, message: dict[str, Any],
                 fds: list[int]) -> None:
        conn.settimeout(None)
        # What the worker holds (modules, SDK classes: millions of objects) goes into the
        # collector's permanent generation before each fork, as CPython's docs advise for fork
        # servers: the run's collections then never walk it, and so neither spend the time nor
        # touch (copy-on-write) its pages. Measured with bench/startup_bench.py: the first
        # OpenAI request of a forked run 350-450 -> ~200 ms.
        gc.freeze()
        if os.fork() != 0:
            return
        code = 1
        before = set(sys.modules)
        try:
            listener.close()
            if self.lock_fd is not None:
                # The lock stays with the worker: a run outliving it must not keep the next
                # worker from starting (flock belongs to the open file, shared after fork).
                os.close(self.lock_fd)
            _become_run(message, fds)
            fds.clear()
            _send(conn, {"pid": os.getpid()})
            threading.Thread(target=_relay_signals, args=(conn,), daemon=True).start()
            code = _run_cli()
        except BaseException:  # noqa: BLE001 - reported on the run's stderr
            import traceback

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001, S110 - the reader may be gone
                    pass
            _DONE.set()
            try:
                _send(conn, {"exit": code})
                conn.close()
            except OSError:
                pass
            # The caller has its exit code; now tell the worker what this run imported.
            learnt = sorted(n for n in set(sys.modules) - before
                            if getattr(sys.modules.get(n), "__spec__", None) is not None)
            try:
                request({"op": "learn", "modules": learnt}, self.home, reply=False)
            except Exception:  # noqa: BLE001, S110 - learning is an optimisation
                pass
            os._exit(code)


def _become_run(message: dict[str, Any], fds: list[int]) -> None:
    """Turn the forked child into the caller's process: streams, folder, variables, argv."""
    import io
    import random

    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update(message["env"])
    sys.argv = ["sigil", *message["argv"]]
    random.seed()  # not the worker's sequence, shared by every child
    # New text streams over fds 0-2: buffering follows the caller's terminal, not the
    # worker's /dev/null.
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8",
                                 errors="strict")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  errors="strict", line_buffering=os.isatty(1),
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True,
                                  write_through=True)


def _relay_signals(conn: socket.socket) -> None:
    """Signals the caller received, raised here; the caller gone: SIGTERM (a hang-up)."""
    lines = _Lines(conn)
    while True:
        try:
            message = lines.read()
        except (OSError, ValueError):
            message = None
        if message is None:
            if not _DONE.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
            return
        if isinstance(message.get("signal"), int):
            os.kill(os.getpid(), message["signal"])


def _run_cli() -> int:
    from . import cli

    try:
        cli.main()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0


def serve(home: Path, idle_timeout: float = DEFAULT_IDLE_S) -> int:
    # What the runs would import late is imported here first (warm_up, learn): loguru must
    # not add its default stderr handler then, or every forked run would echo its daily-log
    # lines on the caller's stderr (the daily log sink sets this before it imports loguru).
    os.environ.setdefault("LOGURU_AUTOINIT", "False")
    lock = _take_lock(home)
    if lock is None:
        print(f"a sigil worker already serves {home}", flush=True)
        return 1
    worker = _Worker(home, idle_timeout)
    worker.lock_fd = lock
    worker.warm_up()
    return worker.serve()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sigil_core.worker",
                                     description="Sigil's resident worker (see the docstring).")
    parser.add_argument("--home", required=True)
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_S)
    args = parser.parse_args(argv)
    from pathlib import Path

    return serve(Path(args.home), args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())
