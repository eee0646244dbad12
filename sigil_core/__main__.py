"""`python -m sigil_core` is the `sigil` command."""

from sigil_core.launch import main

main()
