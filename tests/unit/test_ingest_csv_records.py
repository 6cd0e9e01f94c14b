"""readers.csv_records: one numbering of CSV records, re-synced after an unclosed quote, in both of its modes."""

from __future__ import annotations

import io

from crm_knowledge.ingest.readers import UNCLOSED_QUOTE, csv_records

TEXT = 'a,b,c\r\n1,2,3\r\n4,"5,6\r\n7,8,9\r\n10,"x\r\ny",12\r\n\r\n13,14\r\n15,"open,16\r\n17,18,19\r\n'


def _walk(keep_lines: bool):
    return list(csv_records(lambda: io.StringIO(TEXT, newline=""), ",", keep_lines=keep_lines))


def test_unclosed_quote_is_one_bad_line_and_reading_resumes():
    records = _walk(keep_lines=False)
    assert [(r.number, r.line, r.fields, r.problem) for r in records] == [
        (0, 1, ["a", "b", "c"], None),
        (1, 2, ["1", "2", "3"], None),
        (2, 3, None, UNCLOSED_QUOTE),
        (3, 4, ["7", "8", "9"], None),
        (4, 5, ["10", "x\r\ny", "12"], None),  # a legal multi-line quoted field
        (5, 7, [], None),                     # a blank line counts
        (6, 8, ["13", "14"], None),           # too few fields: the caller rejects it
        (7, 9, None, UNCLOSED_QUOTE),
        (8, 10, ["17", "18", "19"], None),
    ]


def test_both_modes_agree_and_keep_lines_gives_the_physical_lines():
    fast, careful = _walk(keep_lines=False), _walk(keep_lines=True)
    assert [(r.number, r.line, r.fields, r.problem) for r in fast] == \
        [(r.number, r.line, r.fields, r.problem) for r in careful]
    assert "".join(line for r in careful for line in r.lines) == TEXT  # every line once, in order
    assert careful[2].lines == ['4,"5,6\r\n'] and careful[4].lines == ['10,"x\r\n', 'y",12\r\n']


def test_a_header_with_an_unclosed_quote():
    text = 'a,"b,c\n1,2,3\n'
    for keep in (False, True):
        (head,) = csv_records(lambda: io.StringIO(text, newline=""), ",", keep_lines=keep)
        assert (head.number, head.fields, head.problem) == (0, None, UNCLOSED_QUOTE)
