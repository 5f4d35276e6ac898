"""The book builder: roadmap, experiments, rendering and compilation (see build.py)."""
