"""Parse a server-sent-events body into (event, data) pairs, keeping comments separately."""

from __future__ import annotations

import json


def parse_sse(body: str) -> tuple[list[tuple[str, dict]], list[str]]:
    events, comments = [], []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events, comments
