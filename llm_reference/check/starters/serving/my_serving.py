"""Your chat prompt and stop-string streaming, for the `serving` checkpoint.

Fill in the function and the class, then run from this folder:

    python -m llm_reference check serving --impl my_serving

(`python -m llm_reference check --list serving` prints the full protocol.)
"""

from __future__ import annotations


def format_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """ChatML: "<|im_start|>ROLE\\nCONTENT<|im_end|>\\n" per message, then
    "<|im_start|>assistant\\n" if add_generation_prompt."""
    raise NotImplementedError("format_chat")


class StopStream:
    def __init__(self, stop: list[str]):
        """stop: the stop strings; stopped starts False."""
        raise NotImplementedError("StopStream")

    def add(self, piece: str) -> str:
        """The text safe to send now: never any part of a stop string, holding back
        only the longest end that may still become one."""
        raise NotImplementedError("StopStream.add")

    def flush(self) -> str:
        """At the end: the text held back ("" after a stop)."""
        raise NotImplementedError("StopStream.flush")
