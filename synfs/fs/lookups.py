"""Kernel lookup counts, shared by the live tree and the snapshot tree: every entry handed to
the kernel is remembered once, and ``forget`` gives the counts back (pyfuse3's contract)."""

from __future__ import annotations


def remember(lookups: dict[int, int], ino: int) -> None:
    lookups[ino] = lookups.get(ino, 0) + 1


def forget(lookups: dict[int, int], inodes: list[tuple[int, int]]) -> list[int]:
    """Subtract the kernel's counts; returns the inodes the kernel no longer knows."""
    gone = []
    for ino, count in inodes:
        left = lookups.get(ino, 0) - count
        if left > 0:
            lookups[ino] = left
        else:
            lookups.pop(ino, None)
            gone.append(ino)
    return gone
