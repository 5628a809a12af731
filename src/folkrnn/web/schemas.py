"""The studio's request bodies (pydantic): unknown fields are errors, nothing is coerced
(`true` is no number, "1" no integer), floats are finite; strings that name something
are short (`MAX_NAME_CHARS`). Values the library checks (a meter, a type) are checked
there, so that the message is the CLI's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from folkrnn.web.limits import MAX_NAME_CHARS


class Strict(BaseModel):
    """A body with no unknown field, no coercion and no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ComposeBody(Strict):
    model: str = Field("default", max_length=MAX_NAME_CHARS)
    meter: str | None = Field(None, max_length=MAX_NAME_CHARS)
    mode: str | None = Field(None, max_length=MAX_NAME_CHARS)
    key: str = Field("C", max_length=3)
    prime: str = ""
    prime_format: Literal["tokens", "abc"] = "tokens"
    temperature: float = Field(0.9, gt=0, le=10)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, lt=2**64)
    num_tunes: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)  # None: the server's limit
    bars: Literal["free", "strict"] = "free"
    tune_type: str = Field("", max_length=MAX_NAME_CHARS)  # "" or a type (engine.compose_config checks it)
    form: str | None = Field(None, max_length=MAX_NAME_CHARS)  # None: the type's; "" or "none": no plan
    form_bars: int = Field(8, ge=1, le=1000)  # the library's rules (2 .. 64) give the message
    endings: int = Field(0, ge=0, le=2)


class PrimeBody(ComposeBody):
    """The Compose form, its prime checked by generation's own rules and limits (the meter
    of a type, the Key menu, the length cap): a prime that passes makes a tune."""


class TunePatch(Strict):
    title: str | None = None
    starred: bool | None = None
    note: str | None = None


class Ids(Strict):
    ids: Annotated[list[int], Field(min_length=1)]


class InspectBody(Strict):
    model: str = Field("default", max_length=MAX_NAME_CHARS)
    id: int | None = None
    tokens: str | None = None
    abc: str | None = None
    k: int = Field(5, ge=1, le=20)
    key: str | None = Field(None, max_length=3)  # the tonic to show the tokens in; None: the tune's own


Quantity = Literal["h", "c", "i", "f", "g", "o"]
Label = Literal["bar_next", "position", "section", "bar_in_section"]


class UnitsBody(Strict):
    model: str = Field("default", max_length=MAX_NAME_CHARS)
    id: int | None = None
    tokens: str | None = None
    abc: str | None = None
    layer: int = Field(1, ge=1)
    quantity: Quantity = "h"
    units: str | None = Field(None, max_length=2000)  # a list (`12, 301 5-9`); None: the top N by the label
    top: int | None = Field(None, ge=1)  # None: 16 (or the server's unit limit, if lower)
    label: Label = "bar_next"
    archive_tunes: int = Field(0, ge=0)  # rank over this many recent archive tunes too


class InterveneBody(Strict):
    id: int | None = None  # an archive tune: its settings, seed and index
    settings: ComposeBody | None = None  # or a Compose form (a pasted tune has no settings of its own)
    index: int = Field(0, ge=0)  # with settings: which tune of the request
    units: str = Field(..., max_length=2000)  # `3:12,301 2:77=0.9`
    quantity: Quantity = "h"
    ablation: Literal["zero", "mean"] = "zero"

