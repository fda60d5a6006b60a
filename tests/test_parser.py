"""CWM's turn parsing (swerl_tool.py step + default_tools.parse_tool_calls): which replies are errors, and which."""

from __future__ import annotations

import pytest

from agents.cwm.texts import FormatError, ProjectTexts

TEXTS = ProjectTexts()


def parse(answer: str):
    return TEXTS.parse_tool_calls(answer)


@pytest.mark.parametrize("answer,expected", [
    ("\n<tool: bash>\nls -la\npwd\n</tool>", ("bash", "ls -la\npwd")),
    ("<tool:\tbash>\nls\n</tool>", ("bash", "ls")),  # any single whitespace after the colon
    ("prose before\n<tool: bash>\nls\n</tool>\nprose after", ("bash", "ls")),
    ("<tool: bash>\n  ls  \n</tool>", ("bash", "  ls  ")),  # bodies are passed unstripped
    ("<tool: python>\nprint(1)\n</tool>", ("python", "print(1)")),  # unknown names parse; the agent rejects them
    ("<tool: bash>\n\nls\n\n</tool>", ("bash", "\nls\n")),
])
def test_well_formed_calls(answer, expected):
    assert parse(answer) == expected


@pytest.mark.parametrize("answer,check", [
    ("<tool: bash>\nls\n</tool>\n<tool: bash>\npwd\n</tool>", "several"),  # a) two calls
    ("<tool: bash>\nls</tool>", "tags"),  # b) no newline before </tool>: 0 matches, 1+1 tags
    ("<tool: bash2>\nls\n</tool>", "tags"),  # b) a digit in the name
    ("<tool: bash>\necho '</tool>'\n</tool>", "tags"),  # b) a closing tag inside the body
    ("<tool:bash>\nls\n</tool>", "tags"),  # b) no whitespace after the colon
    ("I think the fix is fine.", "none"),  # c) plain prose
    ("", "none"),  # c) an empty reply
    ("<tool: bash>\n \n</tool>", "empty"),  # d) a blank body
])
def test_malformed_calls_fail_the_check_cwm_runs_first(answer, check):
    messages = {"several": "tool calls in one reply", "tags": "do not pair up", "none": "calls no tool",
                "empty": "empty or blank body"}
    with pytest.raises(FormatError, match=messages[check]):
        parse(answer)


def test_the_order_of_checks_is_cwms():
    # two well-formed calls plus a stray tag: the several-calls check comes before the tag count
    with pytest.raises(FormatError, match="tool calls in one reply"):
        parse("<tool: bash>\nls\n</tool>\n<tool: bash>\npwd\n</tool> </tool>")
    # one blank-bodied call plus a stray opening tag: the tag count comes before the empty body
    with pytest.raises(FormatError, match="do not pair up"):
        parse("<tool: bash>\n \n</tool> <tool:")


def test_cwms_own_parser_agrees_on_every_case(cwm_checkout):
    """With a real CWM checkout, its parse_tool_calls accepts and rejects exactly the same replies."""
    from agents.cwm.cwm_source import load_cwm_texts

    theirs = load_cwm_texts(cwm_checkout)
    cases = [a for a, _ in test_well_formed_calls.pytestmark[0].args[1]] + \
            [a for a, _ in test_malformed_calls_fail_the_check_cwm_runs_first.pytestmark[0].args[1]]
    for answer in cases:
        outcomes = []
        for texts in (TEXTS, theirs):
            try:
                outcomes.append(texts.parse_tool_calls(answer))
            except FormatError:
                outcomes.append("error")
        assert outcomes[0] == outcomes[1], answer
