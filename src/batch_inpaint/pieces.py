"""Bytes kept as the pieces they arrived in.

A 12 MP answer is a 16 MB PNG. Joining the pieces it arrives in would map 16 MB of fresh memory per
picture, and on a virtual machine each page fault is dear: about 30 ms of CPU per answer, most of what
curl spends on a whole request. So an answer stays in pieces from the socket to the output file: checked,
given its metadata, hashed and written piece by piece, and joined only where pixels must be decoded.
"""

from __future__ import annotations

from typing import Iterable, Iterator


class Pieces:
    __slots__ = ("parts", "size")

    def __init__(self, parts: Iterable[bytes]) -> None:
        self.parts = tuple(p for p in parts if p)
        self.size = sum(map(len, self.parts))

    @classmethod
    def of(cls, data: "bytes | Pieces") -> "Pieces":
        return data if isinstance(data, Pieces) else cls((data,))

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def __repr__(self) -> str:
        return f"Pieces({len(self.parts)} parts, {self.size} bytes)"

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if there are fewer), joined: for headers, never the body."""
        out = bytearray()
        for part in self.parts:
            out += part[: n - len(out)]
            if len(out) >= n:
                break
        return bytes(out)

    def joined(self) -> bytes:
        """One buffer: only where the bytes must be decoded as a whole."""
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
