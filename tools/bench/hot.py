"""Summarise py-spy's collapsed stacks: share of samples per frame (inclusive) and per leaf.

python -m tools.bench.hot /tmp/profile.pyspy.txt [--top 40] [--grep app/]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--grep", default="")
    args = parser.parse_args(argv)
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    with open(args.path) as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            frames = stack.split(";")
            leaf[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{total} samples")  # noqa: T201
    for title, counter in (("inclusive", inclusive), ("leaf", leaf)):
        print(f"-- {title}")  # noqa: T201
        rows = [(f, n) for f, n in counter.most_common() if args.grep in f][: args.top]
        for frame, n in rows:
            print(f"{100 * n / total:5.1f}%  {frame[:140]}")  # noqa: T201


if __name__ == "__main__":
    main()
