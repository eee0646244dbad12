"""The ``sigil`` command's entry point, kept to a few imports: ``sigil orchestrate`` is handed
to a resident worker when one serves this SIGIL_HOME (``sigil worker start``, see worker.py);
everything else, and every command when no worker runs, is the CLI in this process."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "orchestrate":
        from .worker import delegate

        code = delegate(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    from .cli import main as cli_main

    cli_main()
