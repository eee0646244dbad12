"""Plugins import only the public API: ``sigil_core`` itself and the modules
``sigil_core.PUBLIC_MODULES`` lists (docs/api.md). Every plugin's source, tests included, is
parsed; an import of any other module of the package fails the test, naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import sigil_core

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
SKIP = {".venv", "build", "dist", "__pycache__", ".tox"}


def private_imports(path: Path) -> list[str]:
    """``file:line: module`` for each import of a non-public sigil_core module in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module in sigil_core.PUBLIC_MODULES:  # `from sigil_core import memory`
                modules = [f"{node.module}.{alias.name}" for alias in node.names
                           if f"{node.module}.{alias.name}" in _ALL_MODULES]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [f"{_shown(path)}:{node.lineno}: {module}" for module in modules
                  if (module == "sigil_core" or module.startswith("sigil_core."))
                  and module not in sigil_core.PUBLIC_MODULES]
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(PLUGINS.parent)) if path.is_relative_to(PLUGINS.parent) else str(path)


def _modules() -> set[str]:
    root = Path(sigil_core.__file__).parent
    return {".".join(("sigil_core", *p.relative_to(root).with_suffix("").parts))
            .removesuffix(".__init__") for p in root.rglob("*.py")}


_ALL_MODULES = _modules()


def plugin_sources() -> list[Path]:
    return sorted(p for p in PLUGINS.rglob("*.py") if not SKIP & set(p.parts))


def test_every_public_module_exists():
    assert set(sigil_core.PUBLIC_MODULES) <= _ALL_MODULES | {"sigil_core"}


def test_plugins_import_only_the_public_api():
    sources = plugin_sources()
    assert len(sources) > 50  # every plugin's package and tests are read
    offending = [line for path in sources for line in private_imports(path)]
    assert not offending, ("plugins import internal modules of sigil_core (use the public API, "
                           "docs/api.md):\n" + "\n".join(offending))


def test_the_check_finds_an_internal_import(tmp_path):
    source = tmp_path / "plugin.py"
    source.write_text("import sigil_core\nfrom sigil_core import Run, memory, cli\n"
                      "from sigil_core.memory.text import stem\n"
                      "def f():\n    from sigil_core.files import private_mkdir\n"
                      "    import sigil_core.run\n")
    assert private_imports(source) == [f"{source}:2: sigil_core.cli",
                                       f"{source}:5: sigil_core.files",
                                       f"{source}:6: sigil_core.run"]


def test_every_plugin_is_laid_out_alike():
    """Each plugin is its own distribution built the same way (DESIGN, BRIEF): setuptools, an
    entry point in the group ``sigil``, a ``test`` extra, a README and tests; its command line
    is in ``cli.py`` and its settings in ``settings.py`` when it has them."""
    import tomllib

    problems = []
    for folder in sorted(p for p in PLUGINS.iterdir() if (p / "pyproject.toml").exists()):
        meta = tomllib.loads((folder / "pyproject.toml").read_text())
        name = folder.name
        if meta["build-system"]["build-backend"] != "setuptools.build_meta":
            problems.append(f"{name}: build backend {meta['build-system']['build-backend']}")
        if "test" not in meta["project"].get("optional-dependencies", {}):
            problems.append(f"{name}: no `test` extra")
        if not meta["project"].get("entry-points", {}).get("sigil"):
            problems.append(f"{name}: no entry point in the group `sigil`")
        if not (folder / "README.md").exists() or not (folder / "tests").is_dir():
            problems.append(f"{name}: README.md and tests/ are expected")
        package = next(folder.glob("sigil_*/__init__.py")).parent
        for wrong, right in (("commands.py", "cli.py"), ("config.py", "settings.py")):
            if (package / wrong).exists():
                problems.append(f"{name}: {package.name}/{wrong} should be {right}")
    assert not problems, "\n".join(problems)
