"""ORM rows and engine hits -> the API's schemas, with the URLs a viewer follows."""

from __future__ import annotations

from datetime import datetime, time, timezone
from typing import Any

from api.schemas import ChannelsOut, FiltersIn, HitOut, ImageOut, PercentilesOut
from api.settings import ServiceSettings
from indexing.cases import CaseRecord
from indexing.ingest.metadata import patient_filter_pseudonyms
from indexing.settings import Settings
from indexing.models import Image
from indexing.fused_index import ChannelWeights
from retrieval.results import ChannelScores, Hit
from retrieval.filters import Filters
from retrieval.percentiles import Reference, plain_sentence


def filters_from(filters: FiltersIn, archive: Settings) -> Filters:
    """The API's filters -> the engine's (dates as whole UTC days, inclusive); a patient ID in a patient
    filter becomes its pseudonym, and a name or date there is refused (422), before either reaches the
    engine or the query log."""
    exclude = patient_filter_pseudonyms(filters.exclude_patients, archive.pseudonym_hex_chars, "exclude_patients",
                                        archive.existing_pseudonym_key)
    return Filters(
        diagnoses=tuple(filters.diagnosis), findings=tuple(filters.findings),
        acquired_from=None if filters.date_from is None else datetime.combine(filters.date_from, time.min, timezone.utc),
        acquired_to=None if filters.date_to is None else datetime.combine(filters.date_to, time.max, timezone.utc),
        exclude_patients=exclude,
    )


def url_from_template(template: str | None, study: str | None, series: str | None, sop: str | None) -> str | None:
    if template is None or not study:
        return None
    if ("{series}" in template and not series) or ("{sop}" in template and not sop):
        return None
    return template.format(study=study, series=series, sop=sop)


def _case_fields(settings: ServiceSettings, image_id: int, case: CaseRecord, image: Image | Hit) -> dict[str, Any]:
    """ImageOut's fields (its JSON names) from a case's record and its image's file facts (an archive row or a hit)."""
    base = f"/v1/images/{image_id}"
    study, series, sop = case.study_uid, case.series_uid, case.sop_uid
    return {
        "image_id": image_id, "study_uid": study, "series_uid": series, "sop_uid": sop,
        "thumbnail_url": f"{base}/thumbnail", "image_url": f"{base}/file", "sketch_url": f"{base}/sketch",
        "wado_url": url_from_template(settings.wado_url, study, series, sop),
        "viewer_url": url_from_template(settings.viewer_url, study, series, sop),
        "original_file_name": image.original_name, "case_id": case.case_ref, "patient_pseudonym": case.patient_ref,
        "diagnosis": case.diagnosis, "findings": list(case.findings),
        "study_date": case.acquired_at.date() if case.acquired_at else None, "width": image.width, "height": image.height,
    }


def image_out(settings: ServiceSettings, row: Image) -> ImageOut:
    return ImageOut(**_case_fields(settings, row.id, CaseRecord.of_row(row), row))


def hit_out(settings: ServiceSettings, hit: Hit, reference: Reference | None = None, weights: ChannelWeights | None = None) -> HitOut:
    """A hit as the API shows it: its case's metadata, rank and scores (no DB read), and, given its
    build's reference and the weights it was ranked by, its percentiles and their plain sentence."""
    placed = reference.place(hit.score, hit.channels, weights) if reference is not None and weights is not None else None
    return HitOut(**_case_fields(settings, hit.image_id, hit.case, hit), rank=hit.rank, score=hit.score,
                  channels=ChannelsOut(**hit.channels.__dict__),
                  percentiles=None if placed is None else PercentilesOut(**placed.__dict__),
                  similarity=None if placed is None else plain_sentence(placed))


def result_record(hit: Hit) -> dict[str, Any]:
    """What the query log keeps of a hit: its id and scores (no metadata, no identifier)."""
    return {"image_id": hit.image_id, "score": hit.score, "channels": dict(hit.channels.__dict__)}


def hit_from_record(rank: int, record: dict[str, Any], row: Image) -> Hit:
    return Hit.from_row(rank, row, float(record["score"]), ChannelScores(**record["channels"]))
