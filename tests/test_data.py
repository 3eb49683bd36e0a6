"""The bundled movie-review snippets: contents, fixed split, errors, the rebuild script, IMDB path."""

import gzip
import json
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ppo_edu.lm import data
from ppo_edu.lm.data import DataBundleError, load_reviews, load_snippet_records, load_snippets

ROOT = Path(__file__).resolve().parents[1]


def test_splits_have_the_documented_sizes():
    sizes = {split: len(load_snippets(split)[0]) for split in data.SPLITS}
    assert sizes == {"train": 8484, "validation": 1060, "test": 1061}
    assert len(load_snippets("all")[0]) == 10605


def test_splits_are_disjoint_by_text():
    texts = {split: set(load_snippets(split)[0]) for split in data.SPLITS}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]


def test_split_is_fixed():
    # Pinned: changing the split silently would invalidate every number the course reports.
    test_ids = [r["id"] for r in load_snippet_records("test")]
    assert test_ids[:5] == [2, 13, 17, 26, 33]
    assert sum(test_ids) == 5628890


def test_the_build_scripts_split_reproduces_the_shipped_one(load_tool):
    """A rebuild must give the split every reported number was measured on: the script's
    assign_splits on the shipped texts, not only the ids pinned above."""
    shipped = load_snippet_records("all")
    rows = [{"id": r["id"], "text": r["text"]} for r in shipped]
    load_tool("build_data").assign_splits(rows)
    assert [r["split"] for r in rows] == [r["split"] for r in shipped]


def test_a_rebuild_that_changes_the_bundle_says_so(tmp_path, monkeypatch, capsys, load_tool):
    build = load_tool("build_data")
    for name in ("BUNDLE", "MANIFEST", "LICENSE_OUT"):
        monkeypatch.setattr(build, name, tmp_path / getattr(build, name).name)
    monkeypatch.setattr(build, "DATA_DIR", tmp_path)
    sdist = tmp_path / "sdist.tar.gz"
    sdist.write_bytes(b"stand-in")
    rows = [{"id": 1, "split": "train", "text": "Fine.", "rating": 1.0, "sd": 0.5, "ratings": [1, 1]}]
    first = build.write_bundle(rows, sdist, "licence")  # no manifest before it: nothing to compare
    assert build.write_bundle(rows, sdist, "licence") == first  # the same bytes again: silent
    assert "differs" not in capsys.readouterr().out
    build.write_bundle([{**rows[0], "split": "test"}], sdist, "licence")
    assert f"differs from the one it replaces (SHA-256 {first['sha256'][:12]}" in capsys.readouterr().out


def test_ratings_are_means_of_the_raters_on_the_human_scale():
    for record in load_snippet_records("all")[::97]:
        assert -4 <= record["rating"] <= 4
        assert 15 <= len(record["ratings"]) <= 29
        assert all(-4 <= r <= 4 for r in record["ratings"])
        assert record["rating"] == pytest.approx(np.mean(record["ratings"]), abs=1e-5)
    texts, ratings = load_snippets("train")
    assert ratings.dtype == np.float64 and ratings.shape == (len(texts),)
    assert all(t and t == t.strip() for t in texts)


def test_text_normalisation_is_applied():
    texts = load_snippets("all")[0]
    assert not any("&amp;" in t or "  " in t or "''" in t for t in texts)
    assert texts[0].startswith("The Rock is destined to be the 21st Century's new \"Conan\"")


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="split must be one of"):
        load_snippets("dev")


def test_missing_bundle_names_the_rebuild_command(tmp_path):
    with pytest.raises(DataBundleError, match="python tools/build_data.py"):
        data._load_rows(tmp_path / "nope.jsonl.gz", data.MANIFEST)


def _sha256_mismatch(bundle) -> str:
    """The message of the manifest's checksum check (the path alone must not match it: pytest's
    tmp_path for a test named test_corrupt_... holds the word "corrupt" too)."""
    return (re.escape(str(bundle)) + r" is corrupt \(sha256 [0-9a-f]{12}\.\.\., manifest says "
            + re.escape(json.loads(data.MANIFEST.read_text())["sha256"][:12]) + r"\.\.\.\)"
            + r".*python tools/build_data.py")


def test_corrupt_bundle_names_the_rebuild_command(tmp_path):
    bundle, manifest = tmp_path / "b.jsonl.gz", tmp_path / "m.json"
    raw = bytearray(data.BUNDLE.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bundle.write_bytes(bytes(raw))
    shutil.copy(data.MANIFEST, manifest)
    with pytest.raises(DataBundleError, match=_sha256_mismatch(bundle)):
        data._load_rows(bundle, manifest)


def test_a_bundle_that_decodes_but_differs_from_the_manifest_is_refused(tmp_path):
    """The manifest pins the bundle's bytes, not only that it decodes to the right number of
    rows: the same snippets gzipped again (another mtime in the gzip header) are other bytes,
    and nothing but the SHA-256 check tells them from the shipped bundle (an edited rating
    would pass every other check the same way)."""
    bundle, manifest = tmp_path / "b.jsonl.gz", tmp_path / "m.json"
    raw = data.BUNDLE.read_bytes()
    regzipped = gzip.compress(gzip.decompress(raw), mtime=1)
    assert regzipped != raw and gzip.decompress(regzipped) == gzip.decompress(raw)
    bundle.write_bytes(regzipped)
    shutil.copy(data.MANIFEST, manifest)
    with pytest.raises(DataBundleError, match=_sha256_mismatch(bundle)):
        data._load_rows(bundle, manifest)


def test_truncated_bundle_with_matching_manifest_is_reported(tmp_path):
    bundle, manifest = tmp_path / "b.jsonl.gz", tmp_path / "m.json"
    raw = data.BUNDLE.read_bytes()[:1000]
    bundle.write_bytes(raw)
    import hashlib

    meta = json.loads(data.MANIFEST.read_text())
    meta["sha256"] = hashlib.sha256(raw).hexdigest()
    manifest.write_text(json.dumps(meta))
    with pytest.raises(DataBundleError, match="could not be decoded.*build_data"):
        data._load_rows(bundle, manifest)


def test_ratings_outside_the_scale_are_rejected():
    with pytest.raises(ValueError, match=r"ratings\[1\] = 4.5 is outside"):
        data.validate_ratings([0.0, 4.5])
    with pytest.raises(ValueError, match="outside"):
        data.validate_ratings([float("nan")])


def test_build_script_parses_and_normalises_the_source_format(load_tool):
    build = load_tool("build_data")
    gt = "1\t1.5\tGood &amp; fun  ''movie''.\r\n2\t-2.0\tBad.\r\n"
    rt = "1\t1.5\t0.5\t[1, 2]\r\n2\t-2.0\t0.0\t[-2, -2]\r\n"
    rows = build.parse(gt, rt)
    assert rows[0]["text"] == 'Good & fun "movie".'
    assert rows[0]["ratings"] == [1, 2] and rows[1]["rating"] == -2.0


def test_build_script_rejects_a_mean_that_disagrees_with_the_raters(load_tool):
    build = load_tool("build_data")
    with pytest.raises(SystemExit, match="differs"):
        build.parse("1\t3.0\tText.\n", "1\t3.0\t0.0\t[1, 1]\n")


def test_build_script_keeps_duplicate_texts_in_one_split(load_tool):
    build = load_tool("build_data")
    rows = [{"text": t} for t in ["a", "b", "a", "c", "d", "e", "f", "g", "h", "i", "j", "a"]]
    build.assign_splits(rows)
    assert len({r["split"] for r in rows if r["text"] == "a"}) == 1


def test_build_script_refuses_an_sdist_that_is_not_the_pinned_one(tmp_path, monkeypatch, load_tool):
    build = load_tool("build_data")
    written = []
    monkeypatch.setattr(build, "write_bundle", lambda *args: written.append(args))
    fake = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    fake.write_bytes(b"an edited copy")  # was read, split and written as a new bundle and manifest
    with pytest.raises(SystemExit, match="is not the vaderSentiment-3.3.2.tar.gz the bundle is built from"):
        build.main(["--sdist", str(fake)])
    with pytest.raises(SystemExit, match="no such file"):
        build.main(["--sdist", str(tmp_path / "missing.tar.gz")])
    assert written == []
    manifest = json.loads((ROOT / "ppo_edu" / "data" / "movie_snippets.manifest.json").read_text())
    assert build.SDIST_SHA256 == manifest["source_sdist_sha256"]  # the sdist the shipped bundle came from


def test_bundle_is_gzip_json_lines_matching_its_manifest():
    meta = json.loads(data.MANIFEST.read_text())
    lines = gzip.decompress(data.BUNDLE.read_bytes()).decode().splitlines()
    assert len(lines) == meta["rows"] == 10605
    assert set(json.loads(lines[0])) == {"id", "split", "text", "rating", "sd", "ratings"}
    assert "MIT" in (data.DATA_DIR / "LICENSE-vaderSentiment.txt").read_text()
    assert "C.J. Hutto" in (data.DATA_DIR / "LICENSE-vaderSentiment.txt").read_text()


def test_load_reviews_snippets_is_load_snippets():
    texts, labels = load_reviews("snippets", "validation")
    ref_texts, ref_labels = load_snippets("validation")
    assert texts == ref_texts and np.array_equal(labels, ref_labels)


def test_max_examples_draws_a_fair_seeded_sample_not_the_head():
    """The splits store their positive half first: the first 400 train snippets are 96% positive."""
    all_texts, all_labels = load_snippets("train")
    assert np.mean(all_labels[:400] > 0) > 0.9
    texts, labels = load_reviews("snippets", "train", max_examples=400, seed=3)
    assert 0.35 < np.mean(labels > 0) < 0.65
    index = {t: i for i, t in enumerate(all_texts)}
    rows = [index[t] for t in texts]
    assert rows == sorted(rows) and np.array_equal(labels, all_labels[rows])  # stored order kept
    assert load_reviews("snippets", "train", max_examples=400, seed=3)[0] == texts
    assert load_reviews("snippets", "train", max_examples=400, seed=4)[0] != texts
    for bad in (None, -1, 1.5, True):  # None drew another subset on every call
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            load_reviews("snippets", "train", max_examples=4, seed=bad)


def test_load_reviews_imdb_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"ppo-edu\[colab\]"):
        load_reviews("imdb", "train")


def test_load_reviews_imdb_offline_says_what_to_use_instead(monkeypatch):
    def load_dataset(name, split):  # what datasets 5.2 raises with no network
        raise ConnectionError("Couldn't reach 'stanfordnlp/imdb' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(OSError, match=r"(?s)Couldn't reach.*network access.*load_reviews\('snippets'\)"):
        load_reviews("imdb", "train")


def test_load_reviews_imdb_goes_through_datasets_load_dataset(monkeypatch):
    from ppo_edu.lm.testing import StandInSplit

    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return StandInSplit([{"text": "Great.<br /><br />Loved it.", "label": 1},
                             {"text": "Awful.", "label": 0}, {"text": "Meh.", "label": 0}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    texts, labels = load_reviews("imdb", "test")
    assert calls == [("stanfordnlp/imdb", "test")]  # a two-part id: current datasets refuses "imdb"
    assert texts == ["Great. Loved it.", "Awful.", "Meh."]
    assert labels.tolist() == [1.0, 0.0, 0.0]
    picked, picked_labels = load_reviews("imdb", "test", max_examples=2, seed=0)  # drawn, not the head
    keep = sorted(np.random.default_rng(0).permutation(3)[:2].tolist())
    assert picked == [texts[i] for i in keep] and picked_labels.tolist() == [labels[i] for i in keep]
    with pytest.raises(ValueError, match="no validation split|not 'validation'"):
        load_reviews("imdb", "validation")


def test_unknown_source_is_an_error():
    with pytest.raises(ValueError, match="source must be"):
        load_reviews("yelp", "train")


def test_provenance_names_the_source_the_texts_actually_match():
    # Snippet id 1 is the first line of Pang & Lee's (2005) rt-polarity.pos (lowercased and
    # tokenised there), which is what PROVENANCE.md says; the VADER paper's "Pang & Lee (2004)"
    # is quoted there as the paper's own description.
    first = next(r for r in load_snippet_records("all") if r["id"] == 1)
    assert first["text"].lower().startswith("the rock is destined to be the 21st century's new \"conan\"")
    provenance = (ROOT / "ppo_edu" / "data" / "PROVENANCE.md").read_text()
    assert "Seeing stars" in provenance and "rt-polarity.pos" in provenance
    assert "Pang & Lee (2004)" in provenance  # the paper's description, quoted as such
    licence = (ROOT / "ppo_edu" / "data" / "LICENSE-vaderSentiment.txt").read_text()
    assert "MIT" in licence and "C.J. Hutto" in licence


def test_editing_loaded_records_does_not_change_the_next_load():
    """The rows are cached: a caller's edit of its copy (here the raters' list) must not leak."""
    first = load_snippet_records("validation")
    raters = list(first[0]["ratings"])
    first[0]["ratings"].clear()
    first[0]["text"] = "edited"
    again = load_snippet_records("validation")[0]
    assert again["ratings"] == raters and len(raters) >= 15 and again["text"] != "edited"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_load_reviews_refuses_a_max_examples_that_is_not_a_positive_count(bad):
    # -1 used to keep all rows but the last, silently
    with pytest.raises(ValueError, match="max_examples must be an integer >= 1"):
        load_reviews("snippets", "test", max_examples=bad)


@pytest.mark.parametrize("bad", [["1.5", "-2"], [True, False]])
def test_ratings_that_are_not_numbers_are_refused_not_converted(bad):
    with pytest.raises(TypeError, match="ratings must be numbers"):
        data.validate_ratings(bad)


def test_load_reviews_takes_a_numpy_integer_max_examples():
    texts, labels = load_reviews("snippets", "test", max_examples=np.int64(3))
    assert len(texts) == len(labels) == 3
