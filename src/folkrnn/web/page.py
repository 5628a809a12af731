"""The page and what it asks first: `/` and its static files, npm's abcjs, `/api/info`
(models, meters, modes, tune types, limits, what is missing)."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from folkrnn.sample.types import TYPE_NAMES, tune_type
from folkrnn.tokens import METERS
from folkrnn.web.studio import StudioDep

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()


@functools.cache
def static_files() -> dict[str, Path]:
    """The page's own files: a fixed list, read once (a name is looked up, never joined to a path)."""
    return {p.name: p for p in STATIC.iterdir() if p.is_file()}


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str):
    path = static_files().get(name)
    if path is None:
        raise HTTPException(404, f"no static file {name[:100]!r}")
    return FileResponse(path)


@router.get("/vendor/abcjs.js", include_in_schema=False)
async def abcjs(studio: StudioDep):
    if studio.abcjs is None:
        raise HTTPException(404, "abcjs is not installed (run `npm ci` in the folkrnn checkout)")
    return FileResponse(studio.abcjs, media_type="text/javascript")


# -- api --------------------------------------------------------------------------------------
@router.get("/api/info")
async def info(studio: StudioDep, request: Request):
    return {
        "models": [{"id": m.id, "label": m.label, "hidden_size": m.ckpt.model.config.hidden_size,
                    "num_layers": m.ckpt.model.config.num_layers} for m in studio.models.values()],
        "default_model": studio.default_model,
        "meters": [m[2:] for m in METERS],
        "modes": ["major", "minor", "dorian", "mixolydian"],
        "tune_types": [{"name": t.name, "meter": t.meter.removeprefix("M:"), "form": t.form, "bars": t.bars}
                       for t in map(tune_type, TYPE_NAMES)],
        "limits": {k: getattr(studio.limits, k) for k in studio.limits.__dataclass_fields__},
        "missing": {"abcjs": None if studio.abcjs else "staff notation needs abcjs: run `npm ci` in the folkrnn checkout",
                    "audio": studio.audio_missing},
        "active": studio.active,
        "tokens_generated": studio.tokens_generated,
        "cancelled": studio.cancelled,
        "token_required": request.app.state.token is not None,  # the page sends it in X-Folkrnn-Token with every change
        "archive": {"path": studio.archive.path, "tunes": await asyncio.to_thread(studio.archive.count)},
    }
