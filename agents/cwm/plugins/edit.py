"""The edit tool of the CWM agent, executed inside the task container.

The tool body arrives on stdin (the heredoc adds one final newline, which is kept): the path on
the line right before `<<<<<<< SEARCH`, then one SEARCH/REPLACE block. The search text has to
start at the beginning of a line of the file and occur there exactly once.
Standalone on purpose: it runs under whatever python3 the task image has (3.6 or newer).
"""

import os
import re
import sys

# the path is the single line right before the SEARCH marker; sections are matched lazily
BLOCK = re.compile(
    "([^\n]*)\n<<<<<<< SEARCH\n(.*?)\n=======\n(.*?)\n>>>>>>> REPLACE",
    re.DOTALL,
)

USAGE = "\n".join([
    "The edit tool call could not be parsed. Its body must look like this:",
    "",
    "<tool: edit>",
    "[path]",
    "<<<<<<< SEARCH",
    "[search_lines]",
    "=======",
    "[replacement_lines]",
    ">>>>>>> REPLACE",
    "</tool>",
])

CONTEXT = 8  # lines shown on each side of the edited region


def starts_of(text, needle):
    """Every index where needle begins in text, counting overlapping matches."""
    found = []
    at = text.find(needle)
    while at >= 0:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def line_number(text, index):
    """1-based line of `index` in `text`, where text begins with an added newline."""
    return text.count("\n", 0, index) + 1


def numbered(rows, first):
    return "\n".join(f"{number:6}\t{row}" for number, row in enumerate(rows, first))


def apply(body):
    """Returns (ok, message)."""
    blocks = BLOCK.findall(body)
    if not blocks:
        return False, USAGE
    if len(blocks) != 1:
        return False, (f"An edit call takes exactly one search/replace block, "
                       f"but this one has {len(blocks)}.")
    target, search, replacement = blocks[0]
    if not os.path.exists(target):
        return False, f"There is no file at {target}. Give the path of an existing file."

    with open(target) as handle:
        # the leading newline makes every match begin at a line start
        padded = "\n" + handle.read()
    needle = "\n" + search
    hits = starts_of(padded, needle)

    if not hits:
        message = f"Nothing was replaced: {target} does not contain the search lines exactly as written."
        head = search.split("\n", 1)[0]
        if head.lstrip() in padded:
            message += (" The search lines have to equal whole consecutive lines of the file,"
                        " including their indentation.")
        return False, message
    if len(hits) > 1:
        lines = [line_number(padded, hit) for hit in hits]
        return False, (f"Nothing was replaced: the search lines occur more than once in {target}, "
                       f"at lines {lines}. Add surrounding lines so that they match only once.")

    hit = hits[0]
    updated = (padded[:hit] + "\n" + replacement + padded[hit + len(needle):])[1:]
    with open(target, "w") as handle:
        handle.write(updated)

    line = line_number(padded, hit)
    first = max(1, line - CONTEXT)
    last = line + CONTEXT + replacement.count("\n")
    shown = numbered(updated.split("\n")[first - 1:last], first)
    total = updated.count("\n") + 1
    return True, (f"Edited {target} at line {line}; the file now has {total} lines. "
                  f"Here are the lines around the change:\n{shown}\n"
                  f"Check that the result is what you intended.")


if __name__ == "__main__":
    ok, message = apply(sys.stdin.read())
    print(message)
    sys.exit(0 if ok else 1)
