"""Files: finding and reading the config file, private files and folders, whole-line JSONL
appends and atomic writes (:func:`write_atomic`, public). Kept apart from the config model so
that loading plugins (on every command, `sigil --help` included) does not build the whole
configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError


def sigil_home() -> Path:
    return Path(os.environ.get("SIGIL_HOME") or Path.home() / ".sigil").expanduser()


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, "
                          f"got {type(data).__name__}")
    return data


def config_file_data() -> dict[str, Any]:
    """The config file's top-level sections as read, without building the whole config.

    Loading plugins happens on every command, `sigil --help` included, so this stays cheap;
    a config file with errors yields {} here and is reported by the command that loads it.
    """
    explicit = os.environ.get("SIGIL_CONFIG")
    path = Path(explicit).expanduser() if explicit else sigil_home() / "config.yaml"
    if not path.is_file():
        return {}
    try:
        return read_yaml(path)
    except ConfigError:
        return {}


def disabled_plugins() -> list[str]:
    """``plugins.disabled`` from the config file (see :func:`config_file_data`)."""
    data = config_file_data()
    names = (data.get("plugins") or {}).get("disabled") if isinstance(data.get("plugins"),
                                                                        dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []




# --------------------------------------------------------------------------- private files
#
# Sessions, logs and memories hold what users and models said: whatever the umask, the files
# Sigil creates are 0600 and its folders 0700 (modes given at creation are filtered by the
# umask, so they are set again explicitly).

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_mkdir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 folders; existing ones are untouched."""
    if os.path.isdir(path):  # the usual case (every run's sinks ask): one system call
        return Path(path)
    missing: list[Path] = []
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    Path(path).mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    for folder in reversed(missing):
        try:
            os.chmod(folder, PRIVATE_DIR)
        except OSError:
            pass  # made by someone else in between, or a filesystem without modes
    return Path(path)


def private_open(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """``os.open`` creating the file 0600 if needed (its folder made private too); a file
    descriptor. For a file another library opens (SQLite, loguru), call it once first."""
    path = Path(path)
    if not path.parent.is_dir():
        private_mkdir(path.parent)
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_mode & 0o777 != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        pass
    return fd


def ensure_private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it does not exist (an existing file is left as is)."""
    path = Path(path)
    if not path.exists():
        os.close(private_open(path, os.O_WRONLY))
    return path


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` (and loguru's file sink) that creates files 0600."""
    return private_open(Path(path), flags)


def trim_torn_tail(fd: int) -> int:
    """Cut a last line that has no newline (a write torn by a crash or a full disk).

    Returns the number of bytes removed. The file descriptor must be open for reading.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            os.ftruncate(fd, keep)
            return size - keep
        end = start
    os.ftruncate(fd, 0)
    return size


class JsonlAppender:
    """Appends whole lines to a JSONL file, or nothing: never a torn line.

    A write that fails part-way (disk full, I/O error) is cut back to where it started and
    raises :class:`~sigil_core.errors.StorageError` naming the file; a torn tail left by an
    earlier crash is cut when the file is opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = private_open(self.path, os.O_RDWR | os.O_APPEND)
        trim_torn_tail(self._fd)

    def append(self, text: str) -> None:
        """Write ``text`` (one or more lines ending in a newline) entirely or not at all."""
        from .errors import StorageError

        fd = self._fd
        if fd is None:
            raise StorageError(f"{self.path} is closed", path=self.path)
        data = memoryview(text.encode("utf-8", "replace"))
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as exc:
            # O_APPEND: what this call wrote is the file's last `written` bytes. (Read on
            # failure only: a size read before every write was a system call per flush.)
            try:
                os.ftruncate(fd, os.fstat(fd).st_size - written)
            except OSError:
                pass
            raise StorageError.from_os_error(self.path, exc) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def pretty_json(data: Any) -> str:
    """``data`` as indented JSON (2 spaces, UTF-8 kept, anything else through ``str``).

    orjson, not json: the session record is written at the end of every run, and the standard
    library's pure-Python indenting encoder cost ~5 ms of CPU per run of the lead example.
    """
    import orjson

    try:
        return orjson.dumps(data, default=str,
                            option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        # A lone surrogate (text that was never valid Unicode) is refused by orjson: escaped
        # by the standard library instead, so the record is still written, and read back equal.
        import json

        return json.dumps(data, ensure_ascii=True, indent=2, default=str)


def write_atomic(path: Path, data: Any, *, durable: bool = True) -> None:
    """Write ``data`` as JSON to a temp file in the same folder, then rename it over ``path``:
    readers see the old file or the new one, never half of one (0600, like mkstemp makes it).
    ``durable``: the new content is on the disk (fsync) before the rename, so a power loss
    cannot leave an empty file in the old one's place; False for a file that can be rebuilt
    from another (it still survives a crash of the process)."""
    write_text_atomic(path, pretty_json(data) + "\n", durable=durable)


def write_text_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """:func:`write_atomic` for text."""
    data = memoryview(text.encode("utf-8"))
    fd, tmp = _create_temp(path)
    try:
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)
_temp_count = iter(range(1 << 62))


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file (0600) beside ``path`` for an atomic write: ``.name.<pid>.<n>.tmp``, made
    with O_EXCL as mkstemp makes its files (never an existing file or a symlink), random
    only when that name is taken. tempfile.mkstemp spent ~50 us of CPU in Python around
    the same system call (the session record is written at the end of every run), and
    importing tempfile (with shutil and random) was most of this module's import cost."""
    base = os.path.join(os.fspath(path.parent), f".{path.name}.{os.getpid()}.")
    name = f"{base}{next(_temp_count)}.tmp"
    for _ in range(100):
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:  # left by a process with our pid, or put there on purpose
            name = f"{base}{os.urandom(6).hex()}.tmp"
    raise FileExistsError(f"no free temporary name for {path} in {path.parent}")
