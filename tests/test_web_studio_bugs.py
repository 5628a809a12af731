"""What a musician hit in the studio, each held by a test: an ABC prime is read in the Key
menu's key and the menus' meter; the prime check applies generation's limits; errors name
the user's own lines; the Archive fits a phone, has a key column and stars that toggle;
menus show their whole text; one title everywhere; Inspect shows the tokens in the tune's key.
"""

from __future__ import annotations

import re

import pytest
from conftest import requires
from studio_util import Server, call, chromium, make_studio, sse_events

from folkrnn.vocab import Vocabulary
from folkrnn.web.studio import find_abcjs
from folkrnn.web.engine import Compose, compose_config, prime_tokens

WASHERWOMAN = "|: BGG DGG | BGB dcB |"  # The Irish Washerwoman's opening, a jig in G


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(make_studio(tmp_path_factory.mktemp("db") / "studio.sqlite"))
    yield s
    s.stop()


def generate(srv, **body) -> list[dict]:
    status, raw, _ = call(srv.url + "/api/generate", "POST", {"model": "tiny", **body}, timeout=60)
    assert status == 200, raw
    events = sse_events(raw)
    assert "error" not in [e for e, _ in events], events
    return [d for e, d in events if e == "tune"]


def abc_notes(abc: str) -> str:
    """The music of an ABC text with spaces and bar lines taken out."""
    body = abc.split("\nK:", 1)[1].split("\n", 1)[1]
    return re.sub(r"[\s|:]", "", "\n".join(line for line in body.split("\n") if not line.startswith("%")))


# -- 1. an ABC prime is read in the Key, Meter and Mode menus' settings -------------------------
def test_an_abc_prime_without_k_is_read_in_the_key_menus_key():
    with_header = prime_tokens("M:6/8\nL:1/8\nK:G\n" + WASHERWOMAN, "abc", "6/8", "major")
    assert prime_tokens(WASHERWOMAN, "abc", "6/8", "major", key="G") == with_header
    assert with_header[:5] == ("M:6/8", "K:Cmaj", "|:", "e", "c")  # moved from G to C, as the model reads
    # mode from the menu, tonic from the Key menu: D dorian's A is C dorian's G
    assert prime_tokens("|: A", "abc", "6/8", "dorian", key="D") == ("M:6/8", "K:Cdor", "|:", "G")
    # the model chooses the mode: still read in the Key menu's tonic, the key token a wildcard
    assert prime_tokens("GAB", "abc", key="G") == ("M:*", "K:*", "c", "d", "e")
    cfg = compose_config(Compose(meter="6/8", mode="major", key="G", prime=WASHERWOMAN, prime_format="abc"),
                         Vocabulary.v2(), 1)
    assert cfg.prime == with_header


def test_the_washerwoman_in_g_comes_out_as_typed(srv):
    """The card's score (written in the Key menu's key) starts with the notes typed."""
    (tune,) = generate(srv, meter="6/8", mode="major", key="G", prime=WASHERWOMAN, prime_format="abc", seed=1)
    assert tune["key"] == "G" and "\nK:Gmaj\n" in tune["abc"]
    assert abc_notes(tune["abc"]).startswith("BGGDGGBGBdcB"), tune["abc"]


def test_a_prime_with_k_but_no_m_takes_the_meter_menu(srv):
    assert prime_tokens("K:G\nGAB", "abc", meter="6/8") == ("M:6/8", "K:Cmaj", "c", "d", "e")
    assert prime_tokens("K:G\nGAB", "abc") == ("M:*", "K:Cmaj", "c", "d", "e")  # the model chooses the meter
    assert prime_tokens("K:G", "abc", meter="6/8") == ("M:6/8", "K:Cmaj")  # a header alone is a prime too
    status, data, _ = call(srv.url + "/api/prime", "POST", {"model": "tiny", "prime": "K:G", "prime_format": "abc",
                                                             "meter": "6/8"})
    assert status == 200 and data["tokens"] == ["M:6/8", "K:Cmaj"], data
    (tune,) = generate(srv, meter="6/8", key="G", prime="K:G\nGAB", prime_format="abc", seed=2)
    assert tune["tokens"][:5] == ["M:6/8", "K:Cmaj", "c", "d", "e"]


# -- 2. the prime check applies generation's limits ------------------------------------------------
def test_the_prime_check_applies_the_length_cap(srv):
    long_prime = " ".join(["G"] * 1403)
    body = {"model": "tiny", "prime": long_prime, "prime_format": "tokens"}
    status, data, _ = call(srv.url + "/api/prime", "POST", body)
    assert status == 400 and "length cap" in data["error"], data
    g_status, g_data, _ = call(srv.url + "/api/generate", "POST", body)
    assert g_status == 400 and g_data["error"] == data["error"]  # the same check, the same words
    # a smaller cap asked for by the form is applied too
    status, data, _ = call(srv.url + "/api/prime", "POST", {**body, "prime": "G " * 50, "max_tokens": 40})
    assert status == 400 and "length cap 40" in data["error"]
    status, data, _ = call(srv.url + "/api/prime", "POST", {**body, "prime": "G " * 50})
    assert status == 200 and len(data["tokens"]) == 52


# -- 3. errors name the user's lines ---------------------------------------------------------------
@pytest.mark.parametrize("prime, line", [
    ("H9 ??", 1),  # was "line 5": the line in the header the engine wraps around it
    ("GAB |\nH9 ??\ncde", 2),
    ("T:mine\nK:G\nGAB\nH9", 4),
    ("M:6/8\nGAB\nH9", 3),
])
def test_a_prime_error_names_the_users_line(srv, prime, line):
    status, data, _ = call(srv.url + "/api/prime", "POST", {"model": "tiny", "prime": prime, "prime_format": "abc"})
    assert status == 400 and re.findall(r"\bline (\d+)", data["error"]) == [str(line)], data


# -- 6. one title ------------------------------------------------------------------------------------
def test_one_title_on_the_card_the_score_the_archive_and_the_files(srv):
    (tune,) = generate(srv, seed=3)
    name = f"folkrnn tune {tune['id']}"
    assert tune["title"] == "" and tune["display_title"] == name and f"\nT:{name}\n" in tune["abc"]
    listed = call(srv.url + "/api/tunes?limit=500")[1]["tunes"]
    assert next(t for t in listed if t["id"] == tune["id"])["display_title"] == name
    status, _, headers = call(srv.url + f"/api/tunes/{tune['id']}/midi")
    assert status == 200 and f"folkrnn-tune-{tune['id']}.mid" in headers.get("content-disposition", "")
    call(srv.url + f"/api/tunes/{tune['id']}", "PATCH", {"title": "Mine"})
    fresh = call(srv.url + f"/api/tunes/{tune['id']}")[1]
    assert fresh["display_title"] == "Mine" and "\nT:Mine\n" in fresh["abc"]


# -- 7. Inspect in the tune's key ----------------------------------------------------------------------
def test_tokens_in_key():
    from folkrnn.web.engine import tokens_in_key

    assert tokens_in_key(["M:6/8", "K:Cmaj", "c", "d", "e", "</s>"], "G") == ["M:6/8", "K:Gmaj", "G", "A", "B", "</s>"]
    assert tokens_in_key(["M:6/8", "K:Cmaj", "c"], "C") == ["M:6/8", "K:Cmaj", "c"]


def test_inspect_shows_the_tokens_in_the_tunes_key(srv):
    (tune,) = generate(srv, meter="6/8", mode="dorian", key="D", prime="|: G", prime_format="tokens", seed=4)
    status, data, _ = call(srv.url + "/api/inspect", "POST", {"model": "tiny", "id": tune["id"]})
    assert status == 200 and data["key"] == "D"
    assert data["tokens"][:4] == ["M:6/8", "K:Cdor", "|:", "G"]  # what the model reads
    assert data["shown"][:4] == ["M:6/8", "K:Ddor", "|:", "A"]  # what the score says
    assert [s["shown"] for s in data["steps"][:4]] == data["shown"][:4] and data["steps"][-1]["shown"] == "</s>"
    alts = data["steps"][1]
    assert len(alts["alternatives_shown"]) == len(alts["alternatives"])
    assert all(a.startswith("K:D") for a, (tok, _) in zip(alts["alternatives_shown"], alts["alternatives"])
               if tok.startswith("K:"))
    # pasted ABC: its own K:; tokens: C; or the key asked for
    status, data, _ = call(srv.url + "/api/inspect", "POST", {"model": "tiny", "abc": "X:1\nM:6/8\nL:1/8\nK:G\nGAB|"})
    assert data["key"] == "G" and data["tokens"][2:5] == ["c", "d", "e"] and data["shown"][2:5] == ["G", "A", "B"]
    status, data, _ = call(srv.url + "/api/inspect", "POST", {"model": "tiny", "tokens": "M:6/8 K:Cmaj c d e"})
    assert data["key"] == "C" and data["shown"] == data["tokens"]
    status, data, _ = call(srv.url + "/api/inspect", "POST", {"model": "tiny", "tokens": "M:6/8 K:Cmaj c d e", "key": "G"})
    assert data["shown"] == ["M:6/8", "K:Gmaj", "G", "A", "B"]


# -- the page ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def page_srv(tmp_path_factory):
    s = Server(make_studio(tmp_path_factory.mktemp("db") / "studio.sqlite", abcjs=find_abcjs()))
    yield s
    s.stop()


def open_page(browser, url, errors, width=1280, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]")
    return page


def compose_one(page) -> None:
    page.click("#compose-go")
    page.locator("#compose-tunes .tune").first.wait_for()
    page.wait_for_selector("#compose-go:not([disabled])", timeout=20000)
    assert page.inner_text("#compose-error") == ""


@pytest.mark.slow
@requires("chromium", "abcjs")
def test_page_prime_check_key_length_cap_and_lines(browser, page_srv):
    errors: list[str] = []
    page = open_page(browser, page_srv.url, errors)
    page.select_option("#f-meter", "6/8")
    page.select_option("#f-mode", "major")
    page.select_option("#f-key", "G")
    page.fill("#f-prime", WASHERWOMAN)
    page.wait_for_selector("#prime-check.ok")
    assert "M:6/8 K:Cmaj |: e c c G c c" in page.inner_text("#prime-check")
    page.select_option("#f-key", "C")  # the check follows the Key menu
    page.wait_for_function("document.querySelector('#prime-check').textContent.includes('|: B G G D G G')")
    page.fill("#f-prime", "H9 ??")
    page.wait_for_selector("#prime-check.bad")
    assert "line 1" in page.inner_text("#prime-check") and "line 5" not in page.inner_text("#prime-check")
    page.check("input[name=prime_format][value=tokens]")
    page.fill("#f-prime", " ".join(["G"] * 1403))
    page.wait_for_function("document.querySelector('#prime-check').textContent.includes('length cap')")
    assert page.get_attribute("#prime-check", "class") == "check bad"
    page.close()
    assert errors == []


@pytest.mark.slow
@requires("chromium", "abcjs")
def test_page_menus_show_their_whole_text(browser, page_srv):
    """At desktop width no menu of the Compose form is narrower than its longest choice
    (it was cut to "model ch...")."""
    errors: list[str] = []
    page = open_page(browser, page_srv.url, errors)
    cut = page.evaluate("""Array.from(document.querySelectorAll('#compose-form select')).map(s => {
        const c = s.cloneNode(true);
        c.style.cssText = 'position:absolute;visibility:hidden;width:auto;min-width:0;max-width:none';
        s.parentNode.append(c);
        const need = c.offsetWidth;
        c.remove();
        return [s.id, s.offsetWidth, need];
      }).filter(([, have, need]) => have < need)""")
    assert cut == []
    page.close()
    assert errors == []


@pytest.mark.slow
@requires("chromium", "abcjs")
def test_page_one_title_and_inspect_in_the_key(browser, page_srv):
    errors: list[str] = []
    page = open_page(browser, page_srv.url, errors)
    page.select_option("#f-meter", "6/8")
    page.select_option("#f-mode", "dorian")
    page.select_option("#f-key", "D")
    page.fill("#f-prime", "|: A")  # ABC in D dorian
    page.fill("#f-seed", "5")
    compose_one(page)
    card = page.locator("#compose-tunes .tune").first
    card.locator(".staff svg").wait_for()
    tid = card.get_attribute("data-id")
    name = f"folkrnn tune {tid}"
    assert card.locator(".title").input_value() == name
    assert f"T:{name}" in card.locator(".abc").text_content()
    assert name in card.locator(".staff svg").text_content()  # the score's heading
    page.click("nav [data-view=archive]")
    row = page.locator(f"#archive-table tbody tr[data-id='{tid}']")
    row.wait_for()
    assert row.locator("td.title").inner_text() == name

    row.click()
    page.click("#archive-tune .inspect-btn")
    page.wait_for_selector("#inspect-out .probs .tok")
    toks = page.query_selector_all("#inspect-out .probs .tok")
    assert [t.inner_text() for t in toks[:4]] == ["M:6/8", "K:Ddor", "|:", "A"]  # as typed, as the score
    assert toks[3].get_attribute("data-token") == "G" and "in C: G" in toks[3].get_attribute("title")
    assert "written in D" in page.inner_text("#inspect-out .key-note")
    toks[1].click()
    heads = [h.inner_text() for h in page.query_selector_all("#inspect-out .alts tr.head th")]
    assert heads[:2] == ["in D", "model's token (C)"]
    page.close()
    assert errors == []


@pytest.mark.slow
@requires("chromium", "abcjs")
def test_page_archive_fits_a_phone_with_a_key_column_and_stars(browser, page_srv):
    for seed in (6, 7):
        generate(page_srv, meter="6/8", mode="dorian", key="G", seed=seed)
    errors: list[str] = []
    page = open_page(browser, page_srv.url, errors, width=390, height=844)
    page.click("nav [data-view=archive]")
    page.wait_for_selector("#archive-table tbody tr")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    heads = [h.inner_text() for h in page.query_selector_all("#archive-table thead th") if h.is_visible()]
    assert "Key" in heads
    row = page.locator("#archive-table tbody tr").first
    tid = row.get_attribute("data-id")
    assert row.locator("td.key").inner_text() == "G dorian"
    # a star toggles there, and the archive keeps it
    star = row.locator("button.star")
    assert star.get_attribute("aria-pressed") == "false"
    star.click()
    page.wait_for_selector(f"#archive-table tr[data-id='{tid}'] button.star[aria-pressed=true]")
    assert call(page_srv.url + f"/api/tunes/{tid}")[1]["starred"] is True
    assert page.locator("#archive-tune .tune").count() == 0  # the star is not a click on the row
    star.click()
    page.wait_for_selector(f"#archive-table tr[data-id='{tid}'] button.star[aria-pressed=false]")
    assert call(page_srv.url + f"/api/tunes/{tid}")[1]["starred"] is False
    # an open tune fits too
    row.click()
    page.wait_for_selector("#archive-tune .tune .staff svg")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    page.close()
    assert errors == []
