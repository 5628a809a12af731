"""The Archive room: search, one tune (read, change, delete), its files (ABC, MIDI, WAV
in any key and tempo), export and delete by ids."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from folkrnn.errors import FolkRNNError
from folkrnn.web.archive import Query
from folkrnn.web.engine import tune_midi, tune_wav
from folkrnn.web.limits import Busy, check_finite, check_id, check_short
from folkrnn.web.schemas import Ids, TunePatch
from folkrnn.web.studio import StudioDep, display_title, tune_or_404

router = APIRouter()


@router.get("/api/tunes")
def tunes(studio: StudioDep, meter: str | None = None, mode: str | None = None, model: str | None = None,
          starred: bool | None = None, q: str | None = None, limit: int = 50, offset: int = 0):
    limits = studio.limits
    if not 1 <= limit <= 500:
        raise FolkRNNError(f"limit must be in 1..500, got {limit}")
    if not 0 <= offset <= limits.max_offset:
        raise FolkRNNError(f"offset must be in 0..{limits.max_offset}, got {offset}")
    if q is not None and len(q) > limits.max_search_chars:
        raise FolkRNNError(f"q: the search text has at most {limits.max_search_chars} characters, got {len(q)}")
    for name, v in (("meter", meter), ("mode", mode), ("model", model)):
        check_short(name, v)
    from folkrnn.sample import parse_meter, parse_mode

    query = Query(meter=parse_meter(meter) if meter else None, mode=parse_mode(mode) if mode else None,
                  model=model or None, starred=starred, text=(q or None), limit=limit, offset=offset)
    recs = studio.archive.search(query)
    return {"total": studio.archive.count(query), "tunes": [studio.tune_view(r) for r in recs],
            "models": studio.archive.models()}


@router.get("/api/tunes/{tune_id}")
def get_tune(studio: StudioDep, tune_id: int, key: str | None = None):
    rec = tune_or_404(studio, tune_id)
    return studio.tune_view(rec, _check_key(key, rec) if key is not None else None)


@router.patch("/api/tunes/{tune_id}")
def patch_tune(studio: StudioDep, tune_id: int, body: TunePatch):
    check_id(tune_id)
    try:
        rec = studio.archive.update(tune_id, title=body.title, starred=body.starred, note=body.note)
    except KeyError:
        raise HTTPException(404, f"no tune {tune_id} in the archive") from None
    return studio.tune_view(rec)


@router.delete("/api/tunes/{tune_id}")
def delete_tune(studio: StudioDep, tune_id: int):
    check_id(tune_id)
    if studio.archive.delete([tune_id]) == 0:
        raise HTTPException(404, f"no tune {tune_id} in the archive")
    return {"deleted": 1}


@router.post("/api/delete")
def delete_many(studio: StudioDep, body: Ids):
    return {"deleted": studio.archive.delete(_ids(body.ids))}


def _ids(ids: list[int]) -> list[int]:
    for i in ids:
        check_id(i, "ids: each tune id")
    return ids


def _check_key(key: str | None, rec) -> str:
    from folkrnn.abc import parse_key

    key = check_short("key", key) or rec.settings.get("key") or "C"
    parse_key(key)
    return key


def _check_tempo(tempo: float) -> float:
    check_finite(tempo, "tempo")
    if not 20 <= tempo <= 400:
        raise FolkRNNError(f"tempo must be in 20..400 beats per minute, got {tempo:g}")
    return tempo


def _filename(rec, ext: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", display_title(rec)).strip("-")[:60] or f"folkrnn-{rec.id}"
    return f"{stem}.{ext}"


@router.get("/api/tunes/{tune_id}/abc")
def tune_abc_file(studio: StudioDep, tune_id: int, key: str | None = None):
    rec = tune_or_404(studio, tune_id)
    view = studio.tune_view(rec, _check_key(key, rec))
    if view["abc"] is None:
        raise FolkRNNError(f"tune {tune_id}: {view['abc_error']}")
    return Response(view["abc"], media_type="text/vnd.abc; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(rec, "abc")}"'})


@router.get("/api/tunes/{tune_id}/midi")
def tune_midi_file(studio: StudioDep, tune_id: int, key: str | None = None, tempo: float = 100):
    rec = tune_or_404(studio, tune_id)
    data = tune_midi(rec.tokens, _check_key(key, rec), _check_tempo(tempo), title=display_title(rec))
    return Response(data, media_type="audio/midi",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(rec, "mid")}"'})


@router.get("/api/tunes/{tune_id}/wav")
def tune_wav_file(studio: StudioDep, tune_id: int, key: str | None = None, tempo: float = 100, download: bool = False):
    rec = tune_or_404(studio, tune_id)
    key, tempo = _check_key(key, rec), _check_tempo(tempo)
    if studio.audio_missing:
        raise HTTPException(501, f"audio is unavailable: {studio.audio_missing}; download the MIDI file instead")
    if not studio.renders.acquire(blocking=False):
        raise Busy(503, "the studio is busy rendering audio; try again shortly")
    try:
        data = tune_wav(rec.tokens, key, tempo)
    finally:
        studio.renders.release()
    headers = {"Cache-Control": "max-age=3600"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{_filename(rec, "wav")}"'
    return Response(data, media_type="audio/wav", headers=headers)


@router.post("/api/export")
def export(studio: StudioDep, body: Ids):
    if len(body.ids) > studio.limits.max_export:
        raise FolkRNNError(f"export at most {studio.limits.max_export} tunes at once, got {len(body.ids)}")
    recs = studio.archive.search(Query(ids=tuple(_ids(body.ids)), limit=len(body.ids)))
    if not recs:
        raise HTTPException(404, "none of those tunes is in the archive")
    texts = []
    for rec in sorted(recs, key=lambda r: r.id):
        view = studio.tune_view(rec)
        texts.append(view["abc"] or f"% tune {rec.id} is not a well-formed transcription ({view['abc_error']})\n")
    return Response("\n".join(texts), media_type="text/vnd.abc; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="folkrnn-tunes.abc"'})
