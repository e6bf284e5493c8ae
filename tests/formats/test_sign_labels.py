"""Sign labels read from the archive's findings text and tonsil grade."""

from __future__ import annotations

import pytest

from formats.signs import SIGNS, labels_from_row, sign_labels


def test_each_sign_is_read_from_its_phrase_and_the_grade() -> None:
    text = ("tonsils Brodsky grade 3; erythema of the tonsils and pharynx; white exudate on the tonsils; "
            "uvula deviated to the left")
    labels = sign_labels(text, 3)
    assert list(labels) == list(SIGNS)
    assert labels == {"exudate": True, "erythema": True, "cobblestoning": False, "tonsils_enlarged": True,
                      "coated_tongue": False, "uvula_deviation": True}
    quiet = sign_labels("tonsils Brodsky grade 2; lymphoid follicles on the posterior wall (cobblestoning); coated tongue", "2")
    assert quiet["cobblestoning"] and quiet["coated_tongue"] and not quiet["tonsils_enlarged"] and not quiet["exudate"]


def test_a_row_without_the_columns_or_with_a_bad_grade_is_one_sentence() -> None:
    with pytest.raises(ValueError, match="no 'findings' column"):
        labels_from_row({"tonsil_grade": "1"})
    with pytest.raises(ValueError, match="not a whole number") as error:
        labels_from_row({"findings": "", "tonsil_grade": "Jane Doe"})
    assert "Jane" not in str(error.value)  # a row value never reaches an error
