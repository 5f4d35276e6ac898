"""The starter-repo exporter: `python -m scaffold new --track … --budget …`."""
