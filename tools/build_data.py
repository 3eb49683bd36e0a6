#!/usr/bin/env python
"""Rebuild the bundled movie-review snippets from the vaderSentiment 3.3.2 sdist.

The sdist of ``vaderSentiment==3.3.2`` (MIT licence, C.J. Hutto) ships
``additional_resources/hutto_ICWSM_2014.tar.gz``, which holds the human-rated
movie-review snippets of Hutto & Gilbert (ICWSM 2014):

- ``movieReviewSnippets_GroundTruth.txt``: id, mean rating, text (10,605 sentences);
- ``movieReviewSnippets_anonDataRatings.txt``: id, mean, standard deviation and the
  raters' individual scores on [-4, 4] (15 to 29 raters per sentence).

This script writes ``ppo_edu/data/movie_snippets.jsonl.gz`` (one JSON object per snippet:
``id, split, text, rating, sd, ratings``) and ``movie_snippets.manifest.json`` (row counts
and the bundle's SHA-256, which the loader checks). The output is byte-for-byte
reproducible: fixed split seed, gzip with mtime 0. The sdist must be the one the shipped
bundle was built from (its SHA-256 is pinned below, and in the manifest): pip downloads
it with ``--require-hashes``, and a ``--sdist`` file with another hash is refused before
anything is read from it or written.

    python tools/build_data.py                      # downloads the sdist with pip
    python tools/build_data.py --sdist path/to/vaderSentiment-3.3.2.tar.gz

Text normalisation (documented in ``ppo_edu/data/PROVENANCE.md``): HTML entities are
unescaped (``&amp;`` -> ``&``), the source's doubled apostrophes become a double quote
(``''Conan''`` -> ``"Conan"``), runs of whitespace become one space (the source replaced
dashes by runs of spaces), leading/trailing whitespace is stripped. Nothing else changes.
The split is 80/10/10 train/validation/test by a seeded permutation of the distinct texts,
so the two duplicated sentences never straddle splits.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "ppo_edu" / "data"
BUNDLE = DATA_DIR / "movie_snippets.jsonl.gz"
MANIFEST = DATA_DIR / "movie_snippets.manifest.json"
LICENSE_OUT = DATA_DIR / "LICENSE-vaderSentiment.txt"

SDIST_NAME = "vaderSentiment-3.3.2.tar.gz"
# vaderSentiment-3.3.2.tar.gz on PyPI, from which the shipped bundle was built
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_TAR = "additional_resources/hutto_ICWSM_2014.tar.gz"
GROUND_TRUTH = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
RATINGS = "hutto_ICWSM_2014/movieReviewSnippets_anonDataRatings.txt"
SPLIT_SEED = 20140601
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def download_sdist(dest: Path) -> Path:
    # --require-hashes: pip checks the sdist's hash before it prepares its metadata (which runs
    # the checked sdist's setup.py). The build backend pip installs for that step (setuptools,
    # in an isolated environment) is not hash-checked: pip's --require-hashes does not cover
    # build dependencies (pypa/pip#11974, #13984). Nothing from the sdist is installed or imported.
    requirements = dest / "requirements.txt"
    requirements.write_text(f"vaderSentiment==3.3.2 --hash=sha256:{SDIST_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--require-hashes", "-r", str(requirements), "-d", str(dest)]
    print("+", " ".join(cmd))
    subprocess.run(cmd, check=True)
    found = sorted(dest.glob("vaderSentiment-3.3.2.tar.gz"))
    if not found:
        raise SystemExit(f"pip download did not produce {SDIST_NAME} in {dest}")
    return found[0]


def check_sdist(sdist: Path) -> None:
    """SystemExit unless ``sdist`` is the pinned vaderSentiment 3.3.2 sdist, byte for byte."""
    if not sdist.is_file():
        raise SystemExit(f"--sdist {sdist}: no such file")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{sdist} is not the {SDIST_NAME} the bundle is built from: its SHA-256 is "
                         f"{digest}, expected {SDIST_SHA256}")


def normalise(text: str) -> str:
    text = html.unescape(text).replace("''", '"')
    return re.sub(r"\s+", " ", text).strip()


def read_member(tar: tarfile.TarFile, suffix: str) -> bytes:
    for member in tar.getmembers():
        if member.name.endswith(suffix):
            return tar.extractfile(member).read()
    raise SystemExit(f"{suffix} not found in the archive")


def parse(ground_truth: str, ratings: str) -> list[dict]:
    rows = []
    raters = {}
    for line in ratings.splitlines():
        if not line.strip():
            continue
        sid, mean, sd, raw = line.split("\t")
        raters[int(sid)] = (float(sd), [int(v) for v in ast.literal_eval(raw)])
    for line in ground_truth.splitlines():
        if not line.strip():
            continue
        sid, mean, text = line.split("\t")
        sid = int(sid)
        sd, scores = raters[sid]
        mean = float(mean)
        if abs(mean - float(np.mean(scores))) > 1e-6:
            raise SystemExit(f"snippet {sid}: mean {mean} differs from its raters' {np.mean(scores)}")
        if not -4 <= mean <= 4 or min(scores) < -4 or max(scores) > 4:
            raise SystemExit(f"snippet {sid}: rating outside [-4, 4]")
        text = normalise(text)
        if not text:
            raise SystemExit(f"snippet {sid}: empty text")
        rows.append({"id": sid, "text": text, "rating": round(mean, 6), "sd": sd, "ratings": scores})
    return rows


def assign_splits(rows: list[dict]) -> None:
    texts = sorted({r["text"] for r in rows})
    order = np.random.default_rng(SPLIT_SEED).permutation(len(texts))
    n_train = round(SPLIT_FRACTIONS["train"] * len(texts))
    n_val = round(SPLIT_FRACTIONS["validation"] * len(texts))
    split_of = {}
    for rank, idx in enumerate(order):
        split_of[texts[idx]] = ("train" if rank < n_train else
                                "validation" if rank < n_train + n_val else "test")
    for r in rows:
        r["split"] = split_of[r["text"]]


def write_bundle(rows: list[dict], sdist: Path, license_text: str) -> dict:
    lines = "".join(
        json.dumps({k: r[k] for k in ("id", "split", "text", "rating", "sd", "ratings")},
                   ensure_ascii=False) + "\n"
        for r in rows
    ).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(lines)
    data = buf.getvalue()
    shipped = json.loads(MANIFEST.read_text())["sha256"] if MANIFEST.is_file() else None
    if shipped is not None and shipped != hashlib.sha256(data).hexdigest():
        print(f"warning: the rebuilt bundle differs from the one it replaces (SHA-256 {shipped[:12]}...): "
              "the split or the text changed, and every number the course reports was measured on the "
              "old one. `git diff --stat ppo_edu/data` shows it; `git checkout ppo_edu/data` undoes it.")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    BUNDLE.write_bytes(data)
    splits = {s: sum(r["split"] == s for r in rows) for s in SPLIT_FRACTIONS}
    manifest = {
        "file": BUNDLE.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "rows": len(rows),
        "splits": splits,
        "source": "vaderSentiment==3.3.2 sdist (PyPI), " + INNER_TAR + ": "
                  + GROUND_TRUTH.split("/")[1] + " + " + RATINGS.split("/")[1],
        "source_sdist_sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(),
        "split_seed": SPLIT_SEED,
        "rebuild": "python tools/build_data.py",
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    LICENSE_OUT.write_text(license_text.rstrip() + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help=f"path to {SDIST_NAME} (default: pip download it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(Path(tmp))
        check_sdist(sdist)
        with tarfile.open(sdist, "r:gz") as outer:
            inner_bytes = read_member(outer, INNER_TAR)
            license_text = read_member(outer, "vaderSentiment-3.3.2/LICENSE.txt").decode("utf-8")
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            gt = read_member(inner, GROUND_TRUTH).decode("utf-8")
            rt = read_member(inner, RATINGS).decode("utf-8")
        rows = parse(gt, rt)
        assign_splits(rows)
        manifest = write_bundle(rows, sdist, license_text)
    size = BUNDLE.stat().st_size
    print(f"wrote {BUNDLE.relative_to(ROOT)} ({size / 1024:.0f} KiB, {manifest['rows']} snippets, "
          f"splits {manifest['splits']}) and {MANIFEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
