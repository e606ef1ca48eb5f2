"""The one schema of the options of ``fix localcond`` and the ASE observer.

Every front end reads its options here: the LAMMPS fix hands the words after
its ``types`` list to :func:`parse_fix_keywords` (through
plugin/python_session.cpp) and asks :data:`KEYWORDS` for the keyword names and
:func:`fix_usage` for its usage text; the ASE observer
(:class:`localcond.engine.observer.ConductivityObserver`) takes the reducer
options under the same names (``hist``, ``tcorr``, ``corr``, ``eh``) and
validates them with :meth:`ReducerOptions.from_dict`; ``localcond reduce``
reads them back from the files with the same method.

Units: λ (histogram bounds) in S cm² mol⁻¹, RMAX in Å, TEMP in K; NLAGS and
BLOCK count evaluations (doc/design.md §4–5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Keyword:
    """One keyword of the fix line: its values (name and type each) and what it does."""

    name: str
    values: tuple[tuple[str, type], ...]
    help: str

    @property
    def usage(self) -> str:
        return " ".join([self.name, *(value for value, _ in self.values)])


NEIGHBOR_MODES = ("auto", "lammps", "binning")

KEYWORDS: tuple[Keyword, ...] = (
    Keyword("neighbors", (("auto|lammps|binning", str),), "where the model's edges come from"),
    Keyword("molecules", (("yes|no", str),),
            "yes: each atom of a mapped type is the centre of a molecular ion and carries its molecule's "
            "total charge (atom styles with molecule IDs; the ion's other atoms are NULL types)"),
    Keyword("file", (("PREFIX", str),), "write PREFIX.reduce.npz and PREFIX.summary.json"),
    Keyword("every", (("M", int),), "write the files every M evaluations (default: at the end of each run)"),
    Keyword("hist", (("LO", float), ("HI", float), ("NBINS", int)), "histogram of lambda per species"),
    Keyword("tcorr", (("NLAGS", int),), "time autocorrelation of lambda over NLAGS evaluations"),
    Keyword("corr", (("RMAX", float), ("NBINS", int)), "spatial correlation of lambda up to RMAX (A)"),
    Keyword("eh", (("NLAGS", int), ("BLOCK", int), ("TEMP", float)),
            "live Einstein-Helfand conductivity up to NLAGS evaluations, errors over BLOCK origins, T in K"),
)
KEYWORD_NAMES = tuple(k.name for k in KEYWORDS)
REDUCER_KEYWORDS = ("hist", "tcorr", "corr", "eh")


def fix_usage(ntypes: int | str = "n") -> str:
    """The usage line of ``fix localcond`` (published to the C++ fix)."""
    return (f"fix ID group-ID localcond N model.pt types S1 ... S{ntypes} "
            + " ".join(f"[{k.usage}]" for k in KEYWORDS))


# --- the reducers' options, one dataclass per kind ------------------------------------------

class _Values:
    """The values in the order of the keyword's usage: a list, or the value when there is one."""

    def as_list(self) -> Any:
        values = list(vars(self).values())  # the dataclass fields, in order
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class HistogramOptions(_Values):
    lo: float
    hi: float
    bins: int


@dataclass(frozen=True)
class TimeCorrelationOptions(_Values):
    nlags: int


@dataclass(frozen=True)
class PairCorrelationOptions(_Values):
    rmax: float
    bins: int


@dataclass(frozen=True)
class EinsteinHelfandOptions(_Values):
    nlags: int
    block: int
    temperature_k: float


# what each reducer's values must satisfy: (keyword, test, message)
RULES: tuple[tuple[str, Callable[[Any], bool], Callable[[Any], str]], ...] = (
    ("hist", lambda o: o.hi > o.lo, lambda o: f"hist needs HI > LO, got {o.lo:g} {o.hi:g}"),
    ("hist", lambda o: o.bins >= 1, lambda o: f"hist needs a positive number of bins, got {o.bins}"),
    ("tcorr", lambda o: o.nlags >= 1, lambda o: f"tcorr needs a positive number of lags, got {o.nlags}"),
    ("corr", lambda o: o.rmax > 0, lambda o: f"corr needs RMAX > 0, got {o.rmax:g}"),
    ("corr", lambda o: o.bins >= 1, lambda o: f"corr needs a positive number of bins, got {o.bins}"),
    ("eh", lambda o: o.nlags >= 1 and o.block >= 1,
     lambda o: f"eh needs positive NLAGS and BLOCK, got {o.nlags} {o.block}"),
    ("eh", lambda o: o.temperature_k > 0,
     lambda o: f"eh needs the target temperature in K > 0, got {o.temperature_k:g}"),
)


@dataclass(frozen=True)
class ReducerOptions:
    """Which reducers to keep beyond the moments and the blocking error of the mean."""

    hist: HistogramOptions | None = None
    tcorr: TimeCorrelationOptions | None = None
    corr: PairCorrelationOptions | None = None
    eh: EinsteinHelfandOptions | None = None

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "ReducerOptions":
        """From ``{"hist": [LO, HI, NBINS], "tcorr": NLAGS, "corr": [RMAX, NBINS],
        "eh": [NLAGS, BLOCK, TEMP]}`` (any subset; the form files and restarts store)."""
        unknown = sorted(set(options) - set(REDUCER_KEYWORDS))
        if unknown:
            raise ValueError(f"unknown reducer option(s) {', '.join(unknown)} (known: {' '.join(REDUCER_KEYWORDS)})")
        hist, tcorr, corr, eh = (options.get(k) for k in REDUCER_KEYWORDS)
        return cls(
            hist=None if hist is None else HistogramOptions(float(hist[0]), float(hist[1]), int(hist[2])),
            tcorr=None if tcorr is None else TimeCorrelationOptions(int(tcorr)),
            corr=None if corr is None else PairCorrelationOptions(float(corr[0]), int(corr[1])),
            eh=None if eh is None else EinsteinHelfandOptions(int(eh[0]), int(eh[1]), float(eh[2])))

    def __post_init__(self) -> None:
        for name, test, message in RULES:
            value = getattr(self, name)
            if value is not None and not test(value):
                raise ValueError(message(value))

    def to_dict(self) -> dict[str, Any]:
        return {name: value.as_list() for name in REDUCER_KEYWORDS
                if (value := getattr(self, name)) is not None}


@dataclass(frozen=True)
class FixOptions:
    """The keywords of one ``fix localcond`` line, validated."""

    neighbors: str = "auto"
    molecules: bool = False
    file: str | None = None
    every: int = 0
    reducers: ReducerOptions = ReducerOptions()


def _value(keyword: Keyword, index: int, word: str) -> Any:
    name, kind = keyword.values[index]
    if kind is str:
        return word
    try:
        return int(word) if kind is int else float(word)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"keyword '{keyword.name}' needs {what} for {name}, got '{word}' "
                         f"(usage: {keyword.usage})") from None


def parse_fix_keywords(words: list[str]) -> FixOptions:
    """The keywords after a fix line's ``types`` list, checked (ValueError says what is wrong)."""
    by_name = {k.name: k for k in KEYWORDS}
    given: dict[str, list[Any]] = {}
    i = 0
    while i < len(words):
        keyword = by_name.get(words[i])
        if keyword is None:
            raise ValueError(f"unknown keyword '{words[i]}' (keywords: {' '.join(KEYWORD_NAMES)})")
        if keyword.name in given:
            raise ValueError(f"keyword '{keyword.name}' is given twice")
        n = len(keyword.values)
        if i + n >= len(words):
            raise ValueError(f"keyword '{keyword.name}' needs {n} value(s): {keyword.usage}")
        given[keyword.name] = [_value(keyword, k, words[i + 1 + k]) for k in range(n)]
        i += n + 1
    neighbors = given.get("neighbors", ["auto"])[0]
    if neighbors not in NEIGHBOR_MODES:
        raise ValueError(f"neighbors must be auto, lammps or binning, got '{neighbors}'")
    molecules = given.get("molecules", ["no"])[0]
    if molecules not in ("yes", "no"):
        raise ValueError(f"molecules must be yes or no, got '{molecules}'")
    every = given.get("every", [0])[0]
    if "every" in given and every <= 0:
        raise ValueError(f"'every' (evaluations between file writes) must be a positive integer, got {every}")
    if "every" in given and "file" not in given:
        raise ValueError("'every' sets how often the 'file' is written; add 'file PREFIX'")
    prefix = given.get("file", [None])[0]
    if prefix is not None and not is_text(prefix):
        raise ValueError(f"the file prefix {ascii(prefix)} {MANGLED}: use a prefix of ASCII characters")
    reducers = ReducerOptions.from_dict({k: (v[0] if len(v) == 1 else v) for k, v in given.items()
                                         if k in REDUCER_KEYWORDS})
    return FixOptions(neighbors, molecules == "yes", prefix, every, reducers)


MANGLED = ("is not valid text as LAMMPS passed it on (LAMMPS's input reader replaces a few non-ASCII "
           "characters and drops the first byte of the others)")


def is_text(word: str) -> bool:
    """Whether a word decodes to text (no bytes kept as surrogates, see python_session.cpp)."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
