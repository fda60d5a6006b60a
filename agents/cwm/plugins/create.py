"""The create tool of the CWM agent, executed inside the task container.

The tool body arrives on stdin, followed by the one newline the heredoc adds (dropped here).
Its first line is the path, kept exactly as written; everything after that line is the content,
written verbatim (no newline is added). A body of only a path makes an empty file.
Standalone on purpose: it runs under whatever python3 the task image has (3.6 or newer).
"""

import os
import sys


def make(body):
    """Returns (ok, message)."""
    target, _, content = body.partition("\n")
    if os.path.exists(target):
        return False, f"{target} is already there; create only makes new files, so use edit to change it."
    if not target:
        return False, "No path was given: the first line of the body must be the path of the new file."
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.exists(folder):
        return False, f"Nothing was created, because the directory {folder} does not exist."
    with open(target, "w") as handle:
        handle.write(content)
    lines = content.count("\n") + 1
    return True, f"New file written at {target}, {lines} lines long."


if __name__ == "__main__":
    text = sys.stdin.read()
    if text.endswith("\n"):
        text = text[:-1]
    ok, message = make(text)
    print(message)
    sys.exit(0 if ok else 1)
