"""The folkrnn studio: compose, listen to, keep and inspect tunes in a browser.

`folkrnn serve` starts it. `engine` turns the Compose form into a token stream and a
tune into ABC/MIDI/WAV (library calls only), `units` is Inspect's view of units (on
`folkrnn.interp`), `archive` keeps every tune in SQLite, `app` makes the FastAPI server
from one router per room (`page`, `compose_room`, `archive_room`, `inspect_room`) over the
shared `studio` (a dependency), with `schemas` and `limits`; `static/` is the page (plain
HTML/JS/CSS; abcjs comes from npm's node_modules). The library never imports this package.
"""
