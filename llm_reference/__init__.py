"""The reference implementation of LLM From Scratch.

One concept per module; the book quotes these modules by symbol, and the starter repo
is rendered from them. `python -m llm_reference --help` lists the commands.
"""

__version__ = "0.1.0"
