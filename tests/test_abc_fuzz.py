"""Property tests: random and mutated ABC never crash the reader nor hang it."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from folkrnn.abc import AbcRejected, read_abc, tokens_to_abc, tune_to_tokens
from folkrnn.abc.writer import make_writable
from folkrnn.vocab import Vocabulary

REAL = """X:1
T:The Kesh
M:6/8
L:1/8
R:jig
K:Gmaj
|:"G"~G3 GAB|"D"~A3 ABd|"G"edd gdd|"C"edB "D"dBA|
GAG GAB|ABA ABd|edd gdB|1 AGF G2:|2 AGF GBd||
|:g2g gfg|(3efg e dBG|[1 Bd2 -d>cB:|[2 {c}B2A G3|]
"""
ABC_CHARS = "ABCDEFGabcdefgzxZ,'^_=/<>()[]{}|:.~-!+\"0123456789 \nHTuvKLMX%\\&"
V2 = Vocabulary.v2()


def check(text: str) -> None:
    t0 = time.perf_counter()
    for r in read_abc(text):
        if r.tokens is not None:
            assert V2.unknown(r.tokens) == []
            # Whatever was accepted is written back and read back as its repaired tokens
            # (identically but for what no score can draw, e.g. `A5`, or an unclosed repeat).
            assert tune_to_tokens(tokens_to_abc(r.tokens)) == make_writable(r.tokens)[0]
        else:
            assert r.reason and r.detail
    assert time.perf_counter() - t0 < 5  # a generous bound: a hang, not a speed test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=ABC_CHARS, max_size=300))
def test_random_body_after_a_header(body):
    check("X:1\nT:fuzz\nM:4/4\nL:1/8\nK:D\n" + body)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_random_unicode_text(text):
    check(text)
    check("X:1\n" + text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 8), st.text(alphabet=ABC_CHARS, max_size=4)),
                min_size=1, max_size=6))
def test_mutated_real_tune(edits):
    text = REAL
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    check(text)
    try:
        tune_to_tokens(text)
    except AbcRejected:
        pass


def test_the_unmutated_tune_is_read():
    toks = tune_to_tokens(REAL)
    assert toks[:4] == ["M:6/8", "K:Cmaj", "|:", "c"]
    assert "|1" in toks and "|2" in toks
