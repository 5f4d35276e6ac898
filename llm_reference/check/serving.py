"""serving: the chat prompt, and streaming text that stops at a stop string.

Protocol: a module with a function and a class

    format_chat(messages, add_generation_prompt=False) -> str
    StopStream(stop)  .add(piece) -> str  .flush() -> str  .stopped -> bool

`format_chat`: messages is an OpenAI-style list of {"role": …, "content": …}
(roles system, user, assistant); return the ChatML text, each message as
"<|im_start|>" + role + "\\n" + content + "<|im_end|>" + "\\n", and, with
add_generation_prompt, "<|im_start|>assistant\\n" at the end: the model continues
from there with the assistant's answer.

`StopStream(stop)`: stop is a list of stop strings. The server decodes the new
text piece by piece as tokens come and sends each piece to the client at once;
`add(piece)` returns the text that is safe to send now ("" if none) and `flush()`,
at the end of generation, whatever was held back. The client must receive exactly
the text before the first occurrence of any stop string, never any part of a stop
string, and as early as possible: hold back only the longest end of the text so
far that is the beginning of some stop string (it may still become one). Once a
stop string appears, set `stopped` to True and return only the text before it;
after that add and flush return "".

Reference: `llm_reference.chat.format_chat`; `llm_reference.generate.TextStream`
(with `find_stop`), which the server's `Engine` uses, fed text pieces.
Command: python -m llm_reference check serving --impl my_serving
Tolerance: texts exactly, piece by piece.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Sequence

from ..chat import format_chat
from ..generate import TextStream
from .runner import Node, expect_equal, fail


class ReferenceStopStream:
    """generate.TextStream fed text pieces: token i decodes to the i-th piece."""

    def __init__(self, stop: Sequence[str]):
        self._pieces: list[str] = []
        self._stream = TextStream(self, list(stop))

    def decode(self, ids: Sequence[int]) -> str:  # the tokenizer TextStream calls
        return "".join(self._pieces[i] for i in ids)

    def add(self, piece: str) -> str:
        self._pieces.append(piece)
        return self._stream.add(len(self._pieces) - 1)

    def flush(self) -> str:
        return self._stream.flush()

    @property
    def stopped(self) -> bool:
        return self._stream.stopped


node = Node(
    id="serving",
    title="OpenAI-compatible server",
    protocol=__doc__,
    example="my_serving",
    reference=lambda: SimpleNamespace(format_chat=format_chat,
                                      StopStream=ReferenceStopStream),
    parts=("format_chat", "StopStream"),
)

CONVERSATIONS = [
    [{"role": "user", "content": "Write add(a, b)."}],
    [{"role": "system", "content": "You write Python."},
     {"role": "user", "content": "Sum a list?"},
     {"role": "assistant", "content": "sum(xs)"},
     {"role": "user", "content": "And\nits mean?"}],
]
STREAMS = [  # (stop strings, pieces)
    (["<|im_end|>"], ["Hello", " wor", "ld<", "|im", "_end", "|>more", "!"]),
    (["\n\n", "END"], ["def f", "():\n", "    return 1", "\n", "\nprint"]),
    (["<|"], ["a <", "b", " c<", "|x"]),
    (["STOP"], ["ST", "OR", "Y ST", "OP", "never"]),
    (["abc", "bcd"], ["xab", "cd"]),
    ([], ["no ", "stop ", "strings"]),
]


@node.check("format_chat_matches_reference", uses=["format_chat"],
            section="The protocol",
            hint="each message is <|im_start|>ROLE\\nCONTENT<|im_end|>\\n; the "
                 "generation prompt opens an assistant turn")
def format_chat_matches_reference(impl: Callable) -> None:
    for messages in CONVERSATIONS:
        for prompt in (False, True):
            copies = [dict(m) for m in messages]
            expect_equal(impl(copies, add_generation_prompt=prompt),
                         format_chat(messages, add_generation_prompt=prompt),
                         f"the text of {len(messages)} message(s), "
                         f"add_generation_prompt={prompt}")


def run_stream(cls: Any, stop: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    stream = cls(list(stop))
    out = [stream.add(p) for p in pieces]
    return out + [stream.flush()], bool(stream.stopped)


@node.check("stream_text_before_the_stop", uses=["StopStream"],
            section="Streaming with Server-Sent Events",
            hint="the client must get exactly the text before the first stop "
                 "string, even one split across pieces")
def stream_text_before_the_stop(cls: Any) -> None:
    for stop, pieces in STREAMS:
        ours, stopped = run_stream(cls, stop, pieces)
        expected, want_stopped = run_stream(ReferenceStopStream, stop, pieces)
        expect_equal("".join(map(str, ours)), "".join(expected),
                     f"the text sent for pieces {pieces} with stop {stop}")
        expect_equal(stopped, want_stopped, f"stopped after {pieces} with stop {stop}")


@node.check("stream_pieces_as_early_as_possible", uses=["StopStream"],
            section="Streaming with Server-Sent Events",
            hint="hold back only the longest end of the text that begins a stop "
                 "string; send everything else at once")
def stream_pieces_as_early_as_possible(cls: Any) -> None:
    for stop, pieces in STREAMS:
        ours, _ = run_stream(cls, stop, pieces)
        expected, _ = run_stream(ReferenceStopStream, stop, pieces)
        for i, (got, want) in enumerate(zip(ours, expected)):
            what = (f"flush() after {pieces}" if i == len(pieces)
                    else f"add({pieces[i]!r}) after {pieces[:i]}")
            if got != want:
                fail(f"{what} with stop {stop} returned {got!r}, expected {want!r}")
