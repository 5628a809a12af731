"""Where sections end (`folkrnn.interp.sections`): bar numbers, the edits, the batched
teacher-forced reading against one prefix at a time, and the `sections` analysis."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from folkrnn import tokens as T
from folkrnn.datafile import read_tunes
from folkrnn.interp import sections as S
from folkrnn.interp.registry import Context, ExplainConfig
from folkrnn.interp.runner import registered, run_analyses
from folkrnn.interp.report import _clean
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()
DATA = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"


def _tune(bars: str) -> list[str]:
    return ("M:4/4 K:Cmaj " + bars).split()


def _eight(pickup: str = "", double_after_4: bool = False, tail: str = " |: c 8 | d 8 :|") -> list[str]:
    """A tune whose first section is 8 full bars (C D E F G A B c, 8 eighths each) closed by :|."""
    bars = [f"{p} 8" for p in "CDEFGAB"] + ["c 4 c 4"]
    body = ""
    for k, b in enumerate(bars, 1):
        body += b + (" :|" if k == 8 else " | |" if k == 4 and double_after_4 else " |") + " "
    return _tune((pickup + " " if pickup else "") + body.strip() + tail)


def _ks(tokens):
    return [k for _, k, _ in S.bar_numbers(tokens)]


@pytest.fixture(scope="module")
def tiny() -> FolkRNN:
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=2))
    m.reset_parameters(torch.Generator().manual_seed(3))
    return m.eval()


# -- bar numbers --------------------------------------------------------------------------------
def test_bar_numbers_pickup_sections_endings_and_double_bars():
    t = _tune("G 2 | C 8 | D 8 | E 8 | F 6 :| |: c 8 | d 8 |1 e 8 | f 8 :| |2 g 8 | a 8 |")
    b = S.bar_numbers(t)
    assert [x[1] for x in b] == [0, 1, 2, 3, 4, 1, 2, 3, 4, 3, 4]  # the pickup's line is k = 0
    assert [x[2] for x in b] == ["|", "|", "|", "|", ":|", "|", "|1", "|", ":|", "|", "|"]  # |: and |2 left out
    assert all(t[i] == tok for i, _, tok in b)
    # the second ending counts from where the first began: its two bars are bars 3 and 4 again
    assert b[-2][0] == t.index("g") + 2 and b[-2][1] == 3
    # a double bar written `| |` is one bar line
    assert _ks(_tune("C 8 | D 8 | | E 8 | F 8 |")) == [1, 2, 3, 4]
    assert _ks(_tune("C 8 | D 8 :| |: E 8 | F 8 |")) == [1, 2, 1, 2]
    assert S.bar_numbers(["M:4/4", "K:Cmaj"]) == []


# -- the edits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pickup, double", [("", False), ("G 2", False), ("G 2", True)])
def test_edits_move_the_cadence_bar_where_claimed(pickup, double):
    t = _eight(pickup, double)
    lines, starts = S.eight_bar_lines(t)
    content = {k: t[starts[k]:lines[k]] for k in range(2, 9)}
    assert content[8] == ["c", "4", "c", "4"] and content[5] == ["G", "8"]
    e = {x.condition: x for x in S.edits(t)}
    assert list(e) == list(S.CONDITIONS) and all(set(x.reads) == set(S.CONDITIONS[c]) for c, x in e.items())
    bar4 = len(t[starts[4]:starts[5]])  # bar 4 with the bar line(s) after it
    assert bar4 == (4 if double else 3)

    def before(x, reading, n=4):  # the n tokens before the bar line read
        i = x.reads[reading]
        return list(x.tokens[i - n:i])

    o = e["original"]
    assert o.tokens == tuple(t) and before(o, "bar 8 (cadence)") == content[8] and before(o, "bar 7", 2) == ["B", "8"]
    d = e["drop bar 4"]
    assert len(d.tokens) == len(t) - bar4 and d.tokens[d.reads["bar 7 (cadence)"]] == ":|"
    assert before(d, "bar 7 (cadence)") == content[8] and "F" not in d.tokens[:d.reads["bar 7 (cadence)"]]
    assert [k for i, k, _ in S.bar_numbers(list(d.tokens)) if i == d.reads["bar 7 (cadence)"]] == [7]  # now 7th
    u = e["duplicate bar 4"]
    assert len(u.tokens) == len(t) + bar4 and u.tokens.count("F") == 2
    assert before(u, "bar 9 (cadence)") == content[8] and before(u, "bar 8", 2) == ["B", "8"]
    assert [k for i, k, _ in S.bar_numbers(list(u.tokens)) if i == u.reads["bar 9 (cadence)"]] == [9]
    s = e["swap 5 and 8"]
    assert len(s.tokens) == len(t) and s.tokens[s.reads["bar 5 (cadence)"]] == "|"
    assert before(s, "bar 5 (cadence)") == content[8] and before(s, "bar 8 (old bar 5)", 2) == ["G", "8"]
    assert s.tokens[s.reads["bar 8 (old bar 5)"]] == ":|" and s.reads["bar 8 (old bar 5)"] == lines[8]
    assert [k for i, k, _ in S.bar_numbers(list(s.tokens)) if i == s.reads["bar 5 (cadence)"]] == [5]
    for name, (x, y) in (("swap 2 and 6 (control)", (2, 6)), ("swap 3 and 6 (control)", (3, 6))):
        c = e[name]
        assert len(c.tokens) == len(t) and not c.same and before(c, "bar 8 (cadence)") == content[8]
        assert list(c.tokens[starts[x]:starts[x] + 2]) == content[y] and list(c.tokens[starts[y]:starts[y] + 2]) == content[x]


def test_edits_refuse_sections_that_are_not_eight_bars_and_flag_noop_swaps():
    assert S.edits(_tune("C 8 | D 8 | E 8 | F 8 :| G 8 |")) is None  # 4 bars
    assert S.edits(_tune(" | ".join(f"{p} 8" for p in "CDEFGABcd") + " :|")) is None  # 9 bars
    assert S.edits(_tune("C 8 | D 8 | E 8 |: F 8 | G 8 | A 8 | B 8 | c 8 :|")) is None  # a repeat sign inside
    same = _tune("C 8 | D 8 | E 8 | F 8 | G 8 | D 8 | B 8 | c 8 :|")  # bars 2 and 6 alike
    e = {x.condition: x for x in S.edits(same)}
    assert e["swap 2 and 6 (control)"].same and e["swap 2 and 6 (control)"].tokens == tuple(same)
    assert not e["swap 3 and 6 (control)"].same


# -- batched reading == one prefix at a time -----------------------------------------------------
def _p_end_reference(model, tokens, at) -> float:
    """P(:|) / P(any bar token) at index `at`, from one batch-1 forward pass of <s> + tokens[:at]."""
    bar_ids = [V2[t] for t in V2.tokens if T.kind(t) == "bar"]
    with torch.no_grad():
        logits, _ = model(torch.tensor([[V2.bos] + V2.encode(list(tokens[:at]))]))
    q = torch.softmax(logits[0, -1].double(), -1)
    return float(q[V2[":|"]] / q[bar_ids].sum())


def test_batched_teacher_forced_hazard_equals_one_prefix_at_a_time(tiny):
    tunes = [t for t in read_tunes(DATA)[:7] if len(t) < 250]
    assert len(tunes) >= 4 and len({len(t) for t in tunes}) > 1  # different lengths: padding is exercised
    got = S.teacher_forced_values(tiny, V2, tunes, batch_size=3)
    for toks, (ks, p) in zip(tunes, got):
        bars = S.bar_numbers(toks)
        assert list(ks) == [k for _, k, _ in bars] and len(p) == len(bars) > 0
        want = [_p_end_reference(tiny, toks, i) for i, _, _ in bars]
        np.testing.assert_allclose(p, want, atol=1e-5, rtol=0)
    # and the edits: each reading of a batched run equals its own prefix's
    tunes8 = [_eight(), _eight("G 2", True)]
    cc = S.count_or_cadence(tiny, V2, tunes8, np.random.default_rng(0), permutations=50, draws=50, batch_size=4)
    assert cc["tunes"] == 2 and cc["unchanged"] == {"swap 2 and 6 (control)": 0, "swap 3 and 6 (control)": 0}
    for j, t in enumerate(tunes8):
        for e in S.edits(t):
            for reading, at in e.reads.items():
                assert cc["values"][e.condition][reading][j] == pytest.approx(_p_end_reference(tiny, e.tokens, at), abs=1e-5)


def test_hazard_pools_by_k_with_tune_bootstrap():
    per = [(np.array([1, 2, 2, 20]), np.array([0.0, 1.0, 0.0, 1.0])), (np.array([2]), np.array([1.0]))]
    h = S.hazard(per, np.random.default_rng(0), draws=200, kmax=4)
    assert h["k"] == [1, 2, 3, 4] and h["bar_lines"] == [1, 3, 0, 1] and h["tunes"] == 2
    assert h["rate"][0] == 0.0 and h["rate"][1] == pytest.approx(2 / 3) and h["rate"][2] is None and h["rate"][3] == 1.0
    assert h["lo"][1] <= h["rate"][1] <= h["hi"][1] and h["lo"][2] is None
    emp = S.empirical_values([_eight()])
    assert S.section_lengths(emp, np.random.default_rng(0), draws=20)["share"] == 0.5  # an 8-bar and a 2-bar section


# -- reading the numbers -------------------------------------------------------------------------
def _planted(counting: bool, n: int = 30) -> dict:
    rng = np.random.default_rng(5)
    hi, lo = (lambda: list(0.8 + 0.1 * rng.random(n))), (lambda: list(0.02 * rng.random(n)))
    v = {c: {r: lo() for r in rs} for c, rs in S.CONDITIONS.items()}
    v["original"]["bar 8 (cadence)"] = hi()
    for c in S.CONTROLS:
        v[c]["bar 8 (cadence)"] = hi()
    if counting:  # the :| stays after the 8th bar line whatever it holds
        v["drop bar 4"]["bar 7 (cadence)"] = lo()
        v["duplicate bar 4"]["bar 8"] = hi()
        v["swap 5 and 8"]["bar 8 (old bar 5)"] = hi()
    else:
        v["drop bar 4"]["bar 7 (cadence)"] = hi()
        v["duplicate bar 4"]["bar 9 (cadence)"] = hi()
        v["swap 5 and 8"]["bar 5 (cadence)"] = hi()
    return S.summarise_edits(v, 2 * n, {c: 0 for c in S.CONTROLS}, np.random.default_rng(1), permutations=500, draws=200)


def test_sentences_say_what_the_numbers_say():
    cad, cnt = _planted(False), _planted(True)
    assert S.verdict(cad) == "cadence" and S.verdict(cnt) == "count"
    assert "where the melody cadences, not by counting bars" in " ".join(S.edit_sentences(cad))
    text = " ".join(S.edit_sentences(cnt))
    assert "The model counts bars" in text and "not by counting" not in text
    assert S.edit_sentences(cad)[0].startswith("In 30 of 60 corpus tunes")
    # every mean in the sentences is one of the findings
    m = cad["conditions"]["swap 5 and 8"]["bar 5 (cadence)"]["mean"]
    assert f"{m:.2f}" in S.edit_sentences(cad)[0]


def test_too_few_qualifying_tunes_gives_a_sentence_not_a_crash(tiny):
    short = [_tune("C 8 | D 8 | E 8 | F 8 :| G 8 | A 8 |")] * 3
    cc = S.count_or_cadence(tiny, V2, short, np.random.default_rng(0), permutations=20, draws=20)
    assert cc["tunes"] == 0 and S.verdict(cc) == "too few"
    (s,) = S.edit_sentences(cc)
    assert "Only 0 of 3 corpus tunes have" in s and "too few tunes" in s
    json.dumps(_clean({k: cc[k] for k in ("tunes", "conditions", "tests")}), allow_nan=False)


# -- the analysis ---------------------------------------------------------------------------------
def test_sections_is_registered_between_structure_and_cadences():
    names = [a.name for a in registered() if a.section == "questions"]
    assert "sections" in names
    order = {a.name: a.order for a in registered()}
    assert order["structure"] < order["sections"] < order["cadences"]


def test_sections_analysis_runs_quick_on_a_tiny_model(tiny):
    from folkrnn.checkpoint import Checkpoint

    ck = Checkpoint(tiny, V2, {})
    ctx = Context(ck, None, ExplainConfig.make(quick=True), "tiny", corpus=DATA)
    (r,) = run_analyses(ctx, names=["sections"])
    res = r.result
    assert res.skipped is None, res.skipped
    f = res.findings
    json.dumps(f)  # plain Python numbers, no numpy types
    json.dumps(_clean(f), allow_nan=False)
    assert set(f["hazard"]) == {"corpus", "teacher-forced", "generated"} and f["generated"]["tunes"] == 12
    assert f["hazard"]["corpus"]["tunes"] == 24 and len(f["hazard"]["corpus"]["rate"]) == S.KMAX
    assert len(res.figures) == 1 and res.figures[0].png.startswith(b"\x89PNG") and "control" in res.figures[0].caption
    assert res.tables and res.sentences and "q2" in res.answers
    q = f["count_or_cadence"]["tunes"]
    if q < S.MIN_TUNES:  # 24 tunes in quick mode: the edit test must say the sample is too small
        assert any("too few tunes" in s for s in res.sentences) and "too few" in res.answers["q2"]
    # no corpus: skipped, saying why
    (r2,) = run_analyses(Context(ck, None, ExplainConfig.make(quick=True), "tiny"), names=["sections"])
    assert r2.result.skipped and "corpus" in r2.result.skipped


def test_sections_analysis_on_a_corpus_without_eight_bar_sections(tiny, tmp_path):
    from folkrnn.checkpoint import Checkpoint

    path = tmp_path / "short.txt"
    path.write_text("\n\n".join(f"M:4/4\nK:Cmaj\n{p} 8 | D 8 | E 8 | F 8 :| G 8 | A 8 |" for p in "CDEFGAB") + "\n")
    ctx = Context(Checkpoint(tiny, V2, {}), None, ExplainConfig.make(quick=True), "tiny", corpus=path)
    (r,) = run_analyses(ctx, names=["sections"])
    assert r.result.skipped is None
    assert r.result.findings["count_or_cadence"]["tunes"] == 0 and r.result.findings["verdict"] == "too few"
    assert any("too few tunes to tell whether the model counts bars" in s for s in r.result.sentences)
    assert any("too few bar lines" in s for s in r.result.sentences)  # 7 tunes: no hazard peak either
    json.dumps(_clean(r.result.findings), allow_nan=False)


def test_small_or_unmarked_effects_do_not_give_a_verdict():
    cad = _planted(False)
    v = {c: {r: list(np.array(x) * 0.05) for r, x in rs.items()} for c, rs in cad["values"].items()}  # all P(:|) tiny
    tiny_fx = S.summarise_edits(v, 60, {c: 0 for c in S.CONTROLS}, np.random.default_rng(1), permutations=500, draws=100)
    assert S.verdict(tiny_fx) == "unmarked"  # the unedited section end is not marked by EFFECT
    assert "does not mark the end of these sections" in S.edit_sentences(tiny_fx)[-1]
    mixed = {c: dict(rs) for c, rs in cad["values"].items()}
    mixed["duplicate bar 4"] = _planted(True)["values"]["duplicate bar 4"]  # the duplication says "count"
    m = S.summarise_edits(mixed, 60, {c: 0 for c in S.CONTROLS}, np.random.default_rng(1), permutations=500, draws=100)
    assert S.verdict(m) == "mixed" and "neither counting nor listening" in S.edit_sentences(m)[-1]
