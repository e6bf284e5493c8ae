"""ORM rows and engine hits -> the API's schemas, with the URLs a viewer follows."""

from __future__ import annotations

from datetime import datetime, time, timezone
from typing import Any

from api.schemas import ChannelsOut, FiltersIn, HitOut, ImageOut
from api.settings import ServiceSettings
from indexing.models import Image
from retrieval.engine import ChannelScores, Filters, Hit


def filters_from(filters: FiltersIn) -> Filters:
    """The API's filters -> the engine's (dates as whole UTC days, inclusive)."""
    return Filters(
        diagnoses=tuple(filters.diagnosis), findings=tuple(filters.findings),
        acquired_from=None if filters.date_from is None else datetime.combine(filters.date_from, time.min, timezone.utc),
        acquired_to=None if filters.date_to is None else datetime.combine(filters.date_to, time.max, timezone.utc),
        exclude_patients=tuple(filters.exclude_patients),
    )


def url_from_template(template: str | None, study: str | None, series: str | None, sop: str | None) -> str | None:
    if template is None or not study:
        return None
    if ("{series}" in template and not series) or ("{sop}" in template and not sop):
        return None
    return template.format(study=study, series=series, sop=sop)


def _common(settings: ServiceSettings, image_id: int, study: str | None, series: str | None, sop: str | None) -> dict[str, Any]:
    base = f"/v1/images/{image_id}"
    return {
        "image_id": image_id, "study_uid": study, "series_uid": series, "sop_uid": sop,
        "thumbnail_url": f"{base}/thumbnail", "image_url": f"{base}/file", "sketch_url": f"{base}/sketch",
        "wado_url": url_from_template(settings.wado_url, study, series, sop),
        "viewer_url": url_from_template(settings.viewer_url, study, series, sop),
    }


def image_out(settings: ServiceSettings, row: Image) -> ImageOut:
    return ImageOut(
        **_common(settings, row.id, row.study_uid, row.series_uid, row.sop_uid),
        original_file_name=row.original_name, case_id=row.case_ref, patient_pseudonym=row.patient_ref, diagnosis=row.diagnosis,
        findings=list(row.findings or ()), study_date=row.acquired_at.date() if row.acquired_at else None,
        width=row.width, height=row.height,
    )


def hit_out(settings: ServiceSettings, hit: Hit) -> HitOut:
    """A hit as the API shows it: its case's metadata, rank and scores (no DB read)."""
    return HitOut(
        **_common(settings, hit.image_id, hit.study_uid, hit.series_uid, hit.sop_uid),
        original_file_name=hit.original_name, case_id=hit.case_ref, patient_pseudonym=hit.patient_ref,
        diagnosis=hit.diagnosis, findings=list(hit.findings), study_date=hit.acquired_at.date() if hit.acquired_at else None,
        width=hit.width, height=hit.height, rank=hit.rank, score=hit.score, channels=ChannelsOut(**hit.channels.__dict__),
    )


def result_record(hit: Hit) -> dict[str, Any]:
    """What the query log keeps of a hit: its id and scores (no metadata, no identifier)."""
    return {"image_id": hit.image_id, "score": hit.score, "channels": dict(hit.channels.__dict__)}


def hit_from_record(rank: int, record: dict[str, Any], row: Image) -> Hit:
    return Hit.from_row(rank, row, float(record["score"]), ChannelScores(**record["channels"]))
