"""The starter-repo exporter: `python -m scaffold new --track … --budget …`.

From Python:

    import scaffold
    scaffold.new(track="practitioner", budget="1xH100:8h", output="my-llm")
    scaffold.describe("beginner", "cpu:30m")   # the plan and the files, nothing written
"""

from .generate import Answers, describe, new, new_from, update

__all__ = ["Answers", "describe", "new", "new_from", "update"]
