"""Band text: every spelling parses to one Band, `str(band)` reads back, bad text is one line."""

from __future__ import annotations

import pytest

from nca import PAPER_BANDS, Band
from nca.bands import parse_band

SPELLINGS = [
    ("0.3-0.4", Band(0.3, 0.4)),  # a study file's band parameter
    (" 0.3 - 0.4 ", Band(0.3, 0.4)),
    ("0.3:0.4", Band(0.3, 0.4)),  # nca's --band flag
    (".3:.4", Band(0.3, 0.4)),
    ("0.5:1", Band(0.5, 1.0)),
    ("q0.3:0.4", Band(0.3, 0.4, "quantile")),
    ("q0.8-1.0", Band(0.8, 1.0, "quantile")),
    ("30-40%", Band(0.3, 0.4)),  # the paper's names (analysis.band_label)
    ("50%+", Band(0.5, 1.0)),
    ("band-30-40", Band(0.3, 0.4)),  # anchor names
    ("band-50-100", Band(0.5, 1.0)),
    ("gzip[0.3, 0.4)", Band(0.3, 0.4)),  # str(band)
    ("gzipq[0.5, 1]", Band(0.5, 1.0, "quantile")),
    ("change[0.1, 0.2)", Band(0.1, 0.2, measure="change")),
]


@pytest.mark.parametrize(("text", "band"), SPELLINGS)
def test_every_spelling_parses_and_round_trips(text: str, band: Band) -> None:
    assert parse_band(text) == band
    assert parse_band(str(parse_band(text))) == band


@pytest.mark.parametrize("band", [*PAPER_BANDS, Band(0.125, 0.875, "quantile"),
                                  Band(0.0, 1.0, measure="change"), Band(0.24, 0.2405)])
def test_str_is_the_one_formatter_and_parses_back(band: Band) -> None:
    assert parse_band(str(band)) == band


@pytest.mark.parametrize("text", ["half", "0.5", "x-y", "0.4-0.3", "0.5:1.5", "-0.1:0.5", "30-40",
                                  "band-30", "gzip[0.3, 0.4]", "gzip[0.5, 1)", "lz77[0.1, 0.2)",
                                  "q50%+", ""])
def test_bad_text_is_one_line_naming_it_and_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_band(text)
    msg = str(err.value)
    assert "\n" not in msg and f"band {text!r} is invalid" in msg
    assert "accepted: LOWER-UPPER or LOWER:UPPER" in msg and "0 <= lower < upper <= 1" in msg


def test_paper_bands_are_the_papers_names() -> None:
    names = ("20-30%", "30-40%", "40-50%", "50%+")
    assert [parse_band(name) for name in names] == list(PAPER_BANDS)
