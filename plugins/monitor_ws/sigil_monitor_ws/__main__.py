"""``python -m sigil_monitor_ws serve ...``: how orchestrate spawns the server (no full CLI)."""

from .cli import monitor

if __name__ == "__main__":
    monitor(prog_name="sigil monitor")
