"""The API's request and response bodies (pydantic), apart from the ORM rows they are built from."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval.engine import DEFAULT_K, MAX_K


class StrokeIn(BaseModel):
    """One pen stroke: points (x, y) in [0, 1] of a square canvas, width as a fraction of its side."""

    model_config = ConfigDict(extra="forbid")
    points: list[tuple[float, float]] = Field(min_length=1)
    width: float = Field(0.01, gt=0, le=0.2)
    pressure: list[float] | None = None


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    diagnosis: list[str] = []  # any of
    findings: list[str] = []  # all of
    date_from: date | None = None  # study date, inclusive
    date_to: date | None = None
    exclude_patients: list[str] = []  # patient pseudonyms


class SearchIn(BaseModel):
    """The JSON form of `POST /v1/search` and `POST /v1/generate` (the other form is multipart with a `sketch` file)."""

    model_config = ConfigDict(extra="forbid")
    strokes: list[StrokeIn]
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K)
    filters: FiltersIn = FiltersIn()
    refine: bool = True  # False: x_0 only, no refinement steps (the fast live preview)
    preview: bool = False  # a live preview: logged as kind "preview", left out of the key's recent searches
    # clinical sign -> strength (0 to 1, or to the largest strength chosen on validation; below 0 the sign is
    # absent), "present" or "absent" (the chosen strengths; generation/signs.py's PRESENT and ABSENT),
    # e.g. {"exudate": 1, "erythema": "present", "cobblestoning": "absent"}
    signs: dict[str, float | Literal["present", "absent"]] = {}


class SimilarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K)
    filters: FiltersIn = FiltersIn()


class ChannelsOut(BaseModel):
    appearance: float
    latent: float
    shape: float


class ImageOut(BaseModel):
    """An archive case's metadata (pseudonymised) with its DICOM identity and URLs."""

    image_id: int
    original_file_name: str | None  # kept only when it passed ingest's identifier screen
    case_id: str | None
    patient_pseudonym: str | None
    diagnosis: str | None
    findings: list[str]
    study_date: date | None
    width: int
    height: int
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    thumbnail_url: str
    image_url: str
    sketch_url: str
    wado_url: str | None
    viewer_url: str | None


class PercentilesOut(BaseModel):
    """Each score's place among random archive pairs of the build (%: the share that scored lower)."""

    fused: float
    appearance: float
    latent: float
    shape: float


class HitOut(ImageOut):
    rank: int
    score: float  # fused, calibrated: the ranking is by it
    channels: ChannelsOut
    percentiles: PercentilesOut | None = None  # None when the build has no reference distribution
    similarity: str | None = None  # the percentiles in one plain sentence


class SignOut(BaseModel):
    """A sign a query applied: its strength and how far it moved w (W units) and the appearance vector."""

    sign: str
    strength: float
    routes: list[str] = []  # where the edit went: "w" (the picture, and what C and the latent channel see), "appearance"
    w_shift: float
    appearance_shift: float


class SignControlOut(BaseModel):
    """One sign a query may ask for: its strength range (below 0: the sign absent) and what "present" and
    "absent" mean (chosen on validation, else 1 and -1)."""

    name: str
    min: float
    max: float
    present: float
    absent: float


class SignsOut(BaseModel):
    """`GET /v1/signs`: the bundle's signs, and the routes and appearance weight a sign query uses."""

    signs: list[SignControlOut]
    routes: list[str]
    chosen_on_validation: bool  # whether the defaults were chosen on validation queries (else 1 for every sign)
    current: bool  # learned with the bundle's present G and C (else queries with signs are refused)


class SearchOut(BaseModel):
    query_id: str
    build_id: int
    k: int
    refined: bool
    results: list[HitOut]
    timings_ms: dict[str, float]
    sketch_url: str | None  # the canonical sketch the models read
    generated_image_url: str | None  # x_T (x_0 when not refined)
    step_urls: list[str]  # x_0, x_1 .. x_T
    signs: list[SignOut] = []  # the signs applied to the query (none asked: empty)
    weights: dict[str, float] = {}  # the channel weights the ranking used
    percentiles_note: str | None = None  # why the hits carry no percentiles, when they do not
    note: str | None = None  # a reopened search: what changed since it was saved


class MarksIn(BaseModel):
    """`POST /v1/queries/{id}/refine`: hits of that query marked right (`like`) and not this (`unlike`)."""

    model_config = ConfigDict(extra="forbid")
    like: list[int] = Field([], max_length=MAX_K)
    unlike: list[int] = Field([], max_length=MAX_K)


class RefinementOut(BaseModel):
    """One step of a refined search: the query it made and the marks that made it."""

    query_id: str
    kind: str
    like: list[int]
    unlike: list[int]
    weights: dict[str, float] | None


class RefineOut(SearchOut):
    parent_query_id: str
    refinements: list[RefinementOut]  # the first search, then each refinement up to this one


class SaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)


class SavedOut(BaseModel):
    saved_id: int
    name: str
    query_id: str
    kind: str
    created_at: datetime
    searched_at: datetime
    build_id: int | None
    filters: dict
    top_ids: list[int]  # the first three hits as saved


class ReopenOut(SearchOut):
    saved: SavedOut


class QueryOut(BaseModel):
    """A past query from the audit log, its results as they were ranked (metadata as it is now)."""

    query_id: str
    created_at: datetime
    kind: str
    k: int
    filters: dict
    build_id: int | None
    latency_ms: float
    results: list[HitOut]
    signs: list[SignOut] = []  # the clinical signs the query applied (a refinement or reopening: its first search's)
    parent_query_id: str | None = None  # the search a refinement or reopening started from
    sketch_url: str | None = None  # while the query's pictures are kept: its sketch, x_T and each step
    generated_image_url: str | None = None
    step_urls: list[str] = []


class TopHitOut(BaseModel):
    """One of a recent search's first hits as it was logged: its id, rank and fused score."""

    image_id: int
    rank: int
    score: float


class RecentOut(BaseModel):
    """`GET /v1/queries`: one of the caller's recent searches (ids and scores only, no case metadata)."""

    query_id: str
    created_at: datetime
    kind: str  # "sketch", "example", "refine" or "reopen"
    k: int
    filters: dict
    signs: list[SignOut] = []
    top: list[TopHitOut]  # the first three hits as logged
    sketch_url: str | None  # the drawn sketch while its pictures are kept, else None
    parent_query_id: str | None
    saved: bool  # a saved search names it: kept until forgotten


class ExampleOut(BaseModel):
    image_id: int
    diagnosis: str | None


class IndexOut(BaseModel):
    build_id: int | None
    bundle_version: str | None
    factory: str | None
    vectors: int
    weights: dict[str, float]
    created_at: datetime | None
    live_images: int
    not_indexed: int
    serving_build_id: int | None


class RefreshOut(BaseModel):
    build_id: int
    added: int
    removed: int
    rebuilt: bool


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = {}
