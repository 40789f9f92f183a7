"""`make demo`: the end-to-end walk-through (grown by later work)."""

from __future__ import annotations


def main() -> None:
    print("atdata demo: nothing to show yet")


if __name__ == "__main__":
    main()
