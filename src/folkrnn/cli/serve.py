"""`folkrnn serve`: the studio in the browser (compose, archive, inspect)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="start the studio: compose, listen to, keep and inspect tunes in a browser",
        description="Start the folkrnn studio, a web page on this machine: compose tunes with a model (tokens "
        "stream in as they are generated), see them as staff notation, play and download them as ABC, MIDI "
        "and WAV, keep them in an archive (SQLite), and see the model's probability of every token.",
    )
    p.add_argument("-m", "--model", action="append", default=None, metavar="MODEL",
                   help="a model to offer: `default`, a .safetensors checkpoint or a folk-rnn .pkl "
                        "(repeat for several; default: the shipped model)")
    p.add_argument("--db", default=None, help="the archive file (default: ~/.local/share/folkrnn/studio.sqlite)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                   help="a host name (or address, or *.domain) the studio answers to, as in the Host header; repeat "
                        "for several (default: on loopback, the loopback names; otherwise also the bound address "
                        "and this machine's name). Other names are refused, so a web page elsewhere cannot reach "
                        "the studio through DNS rebinding")
    p.add_argument("--token", default=None,
                   help="the token every change (compose, edit, delete, ...) must carry; the page gets it from the "
                        "printed address (?token=...). Default: a new random one when not on loopback, none on "
                        "loopback; given on loopback, it is required there too")
    p.add_argument("--max-tunes", type=int, default=10, help="tunes per request (default 10)")
    p.add_argument("--max-tokens", type=int, default=1000, help="tokens per tune (default 1000)")
    p.add_argument("--max-concurrent", type=int, default=16,
                   help="generation requests running at once, their tunes stepped as one batch (default 16)")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds a generation request may run (default 120)")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import socket

    import torch

    from folkrnn.errors import FolkRNNError
    from folkrnn.web.archive import default_db_path
    from folkrnn.web.guard import access, browse_host, host_allowed, is_loopback

    try:
        import uvicorn

        from folkrnn.web.app import create_app
        from folkrnn.web.limits import Limits
        from folkrnn.web.studio import load_studio
    except ImportError as e:
        raise FolkRNNError(f"the studio needs FastAPI and uvicorn (pip install fastapi uvicorn): {e}") from None
    for name, v, lo in (("--max-tunes", args.max_tunes, 1), ("--max-tokens", args.max_tokens, 1),
                        ("--max-concurrent", args.max_concurrent, 1), ("--request-timeout", args.request_timeout, 1)):
        if v < lo:
            raise FolkRNNError(f"{name} must be >= {lo}, got {v}")
    if not 0 <= args.port <= 65535:
        raise FolkRNNError(f"--port must be in 0..65535, got {args.port}")
    loopback = is_loopback(args.host)
    hosts, token = access(args.host, args.allowed_host, args.token)
    limits = Limits(max_tunes=args.max_tunes, max_tokens=args.max_tokens, max_concurrent=args.max_concurrent,
                    request_timeout_s=args.request_timeout)
    db = args.db or default_db_path()
    studio = load_studio(args.model or ["default"], db, limits)
    torch.set_num_threads(1)  # batch-1 steps: a second thread buys nothing, and requests run side by side
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections wait in the backlog until the server takes them
    except OSError as e:
        raise FolkRNNError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    host, port = sock.getsockname()[:2]
    shown = browse_host(host, hosts)
    query = f"?token={token}" if token else ""  # as Jupyter does: the page reads it once
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/{query}"
    print(f"folkrnn studio: {url}  (models: {', '.join(studio.models)}; archive: {db})", file=sys.stderr, flush=True)
    if not loopback and shown != "127.0.0.1" and host_allowed("127.0.0.1", hosts):
        print(f"folkrnn studio: on this machine: http://127.0.0.1:{port}/{query}", file=sys.stderr)
    if not loopback:
        print(f"folkrnn studio: open to the network: answering to the hosts {', '.join(hosts)} "
              "(more with --allowed-host); every change needs the token in the address above", file=sys.stderr)
    for what, why in (("staff notation", None if studio.abcjs else "abcjs missing: run `npm ci` in the folkrnn checkout"),
                      ("audio", studio.audio_missing)):
        if why:
            print(f"folkrnn studio: no {what}: {why}", file=sys.stderr)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(create_app(studio, hosts, token), log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
