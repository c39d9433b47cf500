"""`parse_band`: every way a complexity band is written, read into one `nca.Band`.

It lives apart from `nca.config` on purpose: `config.py` is one of the generator's source files
whose bytes enter every NCA cache key (`nca._util.code_version`), and reading text changes no
token. The one way to write a band is `str(band)` (`gzip[0.3, 0.4)`), which this reads back
(exactly for bounds of up to six significant digits: `str` prints them with `:g`).
"""

from __future__ import annotations

import re

from nca.config import Band

_NUM = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"(?P<q>q?)(?P<lo>{_NUM})\s*[-:]\s*(?P<hi>{_NUM})")
_PERCENT = re.compile(rf"(?P<lo>{_NUM})-(?P<hi>{_NUM})%|(?P<open>{_NUM})%\+"
                      rf"|band-(?P<alo>{_NUM})-(?P<ahi>{_NUM})")
_INTERVAL = re.compile(
    rf"(?P<measure>[a-z_]+?)(?P<q>q?)\[(?P<lo>{_NUM}),\s*(?P<hi>{_NUM})(?P<close>[)\]])")

BAND_SPELLINGS = ("LOWER-UPPER or LOWER:UPPER (e.g. 0.3-0.4), qLOWER-UPPER (profile quantiles), "
                  "30-40%, 50%+, band-30-40 or gzip[0.3, 0.4), where 0 <= lower < upper <= 1")
"""What `parse_band` accepts, as its error message says it."""


def parse_band(text: str) -> Band:
    """The band `text` spells; surrounding spaces are ignored.

    Accepted spellings:

    - `0.3-0.4`: a study file's ``band`` parameter (absolute gzip ratio, lower-upper);
    - `0.3:0.4`: the ``--band`` flag of `nca.generate` and `nca.show`;
    - `q0.3-0.4`, `q0.3:0.4`: quantiles of the alphabet's complexity profile;
    - `30-40%`, `50%+`: the paper's names (percent of the gzip ratio; `+` means up to 1);
    - `band-30-40`, `band-50-100`: the paper's bands as the studies name their anchors;
    - `gzip[0.3, 0.4)`, `gzipq[0.5, 1]`, `change[0.1, 0.2)`: `str(band)`, measure included.

    Raises:
        ValueError: One line naming `text` and the accepted spellings.
    """
    body = str(text).strip()
    try:
        if m := _PAIR.fullmatch(body):
            return Band(float(m["lo"]), float(m["hi"]), "quantile" if m["q"] else "absolute")
        if m := _PERCENT.fullmatch(body):
            lo, hi = (m["open"], "100") if m["open"] else (m["lo"] or m["alo"], m["hi"] or m["ahi"])
            return Band(float(lo) / 100, float(hi) / 100)
        if m := _INTERVAL.fullmatch(body):
            band = Band(float(m["lo"]), float(m["hi"]), "quantile" if m["q"] else "absolute",
                        m["measure"])
            if (m["close"] == "]") == (band.upper == 1.0):  # `]` exactly when upper is 1
                return band
    except ValueError:
        pass  # out of range or an unknown measure: the same one line as a typo
    raise ValueError(f"band {text!r} is invalid; accepted: {BAND_SPELLINGS}")
