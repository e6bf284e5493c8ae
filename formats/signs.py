"""Clinical signs as yes/no labels read from an archive's metadata (findings text and tonsil grade).

The archive labels each case with a free-text findings line (`metadata.csv`'s `findings`) and a
Brodsky tonsil grade. Training checks and sign directions need the same signs as booleans; this is
the one place that says which words mean which sign, so that every caller reads them alike.
"""

from __future__ import annotations

from typing import Mapping

# sign name -> the findings phrase that states it (the archive's own vocabulary)
_PHRASES: dict[str, str] = {
    "exudate": "white exudate",
    "erythema": "erythema",
    "cobblestoning": "cobblestoning",
    "coated_tongue": "coated tongue",
    "uvula_deviation": "uvula deviated",
}
# Brodsky grade from which the tonsils count as enlarged (they fill over half the airway)
ENLARGED_TONSIL_GRADE = 3
SIGNS: tuple[str, ...] = ("exudate", "erythema", "cobblestoning", "tonsils_enlarged", "coated_tongue",
                          "uvula_deviation")


def sign_labels(findings: str, tonsil_grade: int | str) -> dict[str, bool]:
    """Each sign of `SIGNS` as present or not in one case's findings line and tonsil grade."""
    text = findings.lower()
    labels = {sign: phrase in text for sign, phrase in _PHRASES.items()}
    labels["tonsils_enlarged"] = int(tonsil_grade) >= ENLARGED_TONSIL_GRADE
    return {sign: labels[sign] for sign in SIGNS}


def labels_from_row(row: Mapping[str, str]) -> dict[str, bool]:
    """`sign_labels` of one metadata.csv row (columns `findings` and `tonsil_grade`)."""
    try:
        return sign_labels(row["findings"], row["tonsil_grade"])
    except KeyError as missing:
        raise ValueError(f"metadata has no {missing.args[0]!r} column; sign labels need findings and tonsil_grade") from None
    except ValueError:
        raise ValueError("a tonsil_grade in the metadata is not a whole number") from None
