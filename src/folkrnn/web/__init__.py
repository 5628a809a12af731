"""The folkrnn studio: compose, listen to, keep and inspect tunes in a browser.

`folkrnn serve` starts it. `engine` turns the Compose form into a token stream and a
tune into ABC/MIDI/WAV (library calls only), `archive` keeps every tune in SQLite,
`app` is the FastAPI server, `static/` the page (plain HTML/JS/CSS; abcjs comes from
npm's node_modules). The library never imports this package.
"""
