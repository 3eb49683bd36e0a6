"""The text lessons 5-6 train on: human-rated movie-review snippets, or IMDB on Colab.

Offline (the default) the data are the 10,605 movie-review sentences of Hutto & Gilbert
(ICWSM 2014; Rotten Tomatoes snippets from Pang & Lee's 2005 sentence polarity data),
shipped in the ``vaderSentiment==3.3.2`` sdist and bundled here
(``ppo_edu/data/movie_snippets.jsonl.gz``; provenance and licence in
``ppo_edu/data/PROVENANCE.md``). Each sentence carries the mean of 15-29 human ratings on
[-4, 4] (-4 extremely negative, +4 extremely positive) and the individual ratings.

The split is fixed in the bundle (80/10/10): the tokenizer, the tiny GPT-2 and the reward
model were trained on ``"train"`` only, ``"validation"`` chose their hyperparameters, and
the numbers the course reports are on ``"test"``. Every split is stored in id order, which
puts its positive snippets first (the first quarter of ``"train"`` is 96.5% positive, the
last 7%), so a head of a split is one-sided: take a seeded random subset.
``load_reviews(..., max_examples=N)`` draws one and keeps it in the stored order (so its
own head is one-sided again); ``ppo_edu.rlhf.setups.shuffled_reviews`` also shuffles it.

On Colab, ``load_reviews("imdb", split)`` returns IMDB reviews through the ``datasets``
library (``pip install "ppo-edu[colab]"``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ppo_edu._checks import require_count

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
BUNDLE = DATA_DIR / "movie_snippets.jsonl.gz"
MANIFEST = DATA_DIR / "movie_snippets.manifest.json"
REBUILD_COMMAND = "python tools/build_data.py"
SPLITS = ("train", "validation", "test")
RATING_RANGE = (-4.0, 4.0)


class DataBundleError(RuntimeError):
    """The bundled data is missing or corrupt; the message names the rebuild command."""


def _broken(problem: str) -> DataBundleError:
    return DataBundleError(
        f"{problem}. Rebuild the bundle from the vaderSentiment 3.3.2 sdist with "
        f"`{REBUILD_COMMAND}` (run from the repository root; it pip-downloads the sdist, "
        f"or pass --sdist PATH)."
    )


@functools.lru_cache(maxsize=4)
def _load_rows(bundle: Path = BUNDLE, manifest: Path = MANIFEST) -> tuple[dict, ...]:
    if not bundle.is_file():
        raise _broken(f"the movie-review bundle {bundle} is missing")
    if not manifest.is_file():
        raise _broken(f"the bundle's manifest {manifest} is missing")
    try:
        expected = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise _broken(f"the manifest {manifest} is unreadable ({exc})") from exc
    data = bundle.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.get("sha256"):
        raise _broken(f"{bundle} is corrupt (sha256 {digest[:12]}..., manifest says "
                      f"{str(expected.get('sha256'))[:12]}...)")
    try:
        rows = tuple(json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines())
    except (OSError, EOFError, ValueError) as exc:
        raise _broken(f"{bundle} could not be decoded ({exc})") from exc
    if len(rows) != expected.get("rows"):
        raise _broken(f"{bundle} holds {len(rows)} snippets, the manifest says {expected.get('rows')}")
    return rows


def load_snippet_records(split: str = "train") -> list[dict]:
    """Every field of one split: ``id, split, text, rating, sd, ratings`` (ratings = raters' scores)."""
    if split not in SPLITS + ("all",):
        raise ValueError(f"split must be one of {SPLITS} or 'all', got {split!r}")
    rows = _load_rows()
    # copies down to the raters' lists: the rows are cached, and a caller that edits its
    # records must not change what the next call loads
    return [{k: list(v) if isinstance(v, list) else v for k, v in r.items()}
            for r in rows if split == "all" or r["split"] == split]


def load_snippets(split: str = "train") -> tuple[list[str], np.ndarray]:
    """Texts and mean human ratings (float64, in [-4, 4]) of one split of the movie snippets.

    ``split`` is ``"train"`` (8,484), ``"validation"`` (1,060) or ``"test"`` (1,061);
    ``"all"`` gives all 10,605 in id order. Each split is in id order too, positive snippets
    first: never cut a head off it for a sample (see the module docstring).
    """
    records = load_snippet_records(split)
    return [r["text"] for r in records], np.array([r["rating"] for r in records], dtype=np.float64)


def validate_ratings(ratings, name: str = "ratings") -> np.ndarray:
    """Ratings as a float array; ValueError if any is NaN or outside [-4, 4].

    Only numbers are ratings: strings or booleans are a TypeError, not converted.
    """
    raw = ratings.detach().cpu().numpy() if hasattr(ratings, "detach") else np.asarray(ratings)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numbers, got an array of dtype {raw.dtype}")
    arr = raw.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    lo, hi = RATING_RANGE
    bad = ~np.isfinite(arr) | (arr < lo) | (arr > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {arr[i]} is outside the human rating scale [{lo:g}, {hi:g}]")
    return arr


_IMDB_SPLITS = {"train": "train", "test": "test", "unsupervised": "unsupervised"}
IMDB_DATASET = "stanfordnlp/imdb"
"""The hub id of IMDB (``huggingface_hub``'s file system refuses the old one-part id ``"imdb"``)."""


def load_reviews(source: str = "snippets", split: str = "train", max_examples: int | None = None,
                 seed: int = 0):
    """Review texts and their labels from ``source``.

    - ``"snippets"``: the bundled movie snippets, labels = mean human rating in [-4, 4]
      (the same as :func:`load_snippets`). Works offline.
    - ``"imdb"``: the IMDB reviews of Maas et al. (2011) from the Hugging Face hub through
      ``datasets.load_dataset("stanfordnlp/imdb")`` (needs network and ``pip install
      "ppo-edu[colab]"``; the old one-part id ``"imdb"`` is refused by current ``datasets``);
      labels are 0 (negative) / 1 (positive) as floats; splits ``train``, ``test`` and
      ``unsupervised`` (unlabelled: its labels are -1; IMDB has no validation split). HTML
      line breaks become spaces.

    Both store each split grouped by sentiment (the snippets' positive half first, IMDB by
    label), so ``max_examples`` (N >= 1) draws N items at random with ``seed`` and keeps
    them in the stored order; a head would be one-sided (for IMDB, one class only). N may
    be the split's whole size (all of it, in the stored order); a larger N is a ValueError
    that names the size (it is never quietly cut down to what the split holds).
    """
    if max_examples is not None:
        max_examples = require_count("max_examples", max_examples)
    seed = require_count("seed", seed, minimum=0)
    if source == "snippets":
        texts, labels = load_snippets(split)
    elif source == "imdb":
        if split not in _IMDB_SPLITS:
            raise ValueError(f"IMDB has splits {tuple(_IMDB_SPLITS)}, not {split!r}")
        try:
            import datasets
        except ImportError as exc:
            raise ImportError(
                "load_reviews('imdb') needs the `datasets` library: "
                "pip install 'ppo-edu[colab]' (or pip install datasets). "
                "Offline, use load_reviews('snippets') instead."
            ) from exc
        try:
            ds = datasets.load_dataset(IMDB_DATASET, split=_IMDB_SPLITS[split])
        except OSError as exc:  # ConnectionError offline (after about 24 s of retries), or not found
            raise OSError(f"could not load IMDB ({IMDB_DATASET!r}) from the Hugging Face hub: {exc}\n"
                          "It needs network access (on Colab it works); offline, use "
                          "load_reviews('snippets') instead.") from exc
        if max_examples is not None:
            _require_subset(max_examples, len(ds), source, split)
            ds = ds.select(_random_subset(len(ds), max_examples, seed))
        texts = [re.sub(r"\s+", " ", re.sub(r"<br\s*/?>", " ", t)).strip() for t in ds["text"]]
        labels = np.asarray(ds["label"], dtype=np.float64)
    else:
        raise ValueError(f"source must be 'snippets' or 'imdb', got {source!r}")
    if max_examples is not None and source == "snippets":
        _require_subset(max_examples, len(texts), source, split)
        keep = _random_subset(len(texts), max_examples, seed)
        texts, labels = [texts[i] for i in keep], labels[keep]
    return texts, labels


def _require_subset(max_examples: int, size: int, source: str, split: str) -> None:
    if max_examples > size:  # 5000 of the 1,061 test snippets returned 1,061, silently
        raise ValueError(f"max_examples={max_examples} but the {source} {split!r} split has only "
                         f"{size} items: ask for at most {size}, or max_examples=None for all of them")


def _random_subset(n: int, k: int, seed: int) -> list[int]:
    """min(k, n) indices of range(n), drawn at random with ``seed``, in increasing order."""
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:k])
