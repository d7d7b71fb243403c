import itertools
import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from genzoo.cli.main import app
from genzoo.core.errors import GenzooError
from genzoo.store.dedup import (NearDuplicateIndex, dedup_texts, dedup_vectors, exact_key, jaccard, normalize_text,
                                shingles)

runner = CliRunner()
TINY_GPT = ["--set", "layers=1", "--set", "width=16", "--set", "heads=2", "--set", "context=16"]


def words(rng, n, vocab):
    return [rng.choice(vocab) for _ in range(n)]


@pytest.fixture(scope="module")
def planted():
    """60 distinct random documents of 120 words, 20 edited copies (1 or 2 words changed: Jaccard of 5-word
    shingles 0.92 or 0.84), 10 exact copies with changed case/whitespace/width, and 10 documents sharing
    half their words with another (Jaccard about 0.3: related, not duplicates)."""
    rng = random.Random(0)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    docs = [words(rng, 120, vocab) for _ in range(60)]
    texts = [" ".join(d) for d in docs]
    for i in range(20):
        copy = list(docs[i])
        for _ in range(1 + i % 2):
            copy[rng.randrange(len(copy))] = rng.choice(vocab)
        texts.append(" ".join(copy))
    for i in range(20, 30):
        texts.append("  " + texts[i].upper().replace(" ", " \n\t", 3).replace("A", "\uff21"))  # full-width A
    for i in range(30, 40):
        texts.append(" ".join(docs[i][:60] + words(rng, 60, vocab)))
    return texts


def test_normalization_folds_case_width_and_whitespace():
    assert normalize_text("  Ｈｅｌｌｏ\u00a0\tWORLD\n") == "hello world"
    assert exact_key("Straße ﬁle") == exact_key("STRASSE file")
    assert exact_key("a b") != exact_key("ab")
    with pytest.raises(GenzooError):
        normalize_text(3)


def test_shingles_and_jaccard():
    a = shingles("one two three four five six", k=5)
    b = shingles("one two three four five seven", k=5)
    assert len(a) == 2 and jaccard(a, b) == pytest.approx(1 / 3)
    assert len(shingles("tiny text", k=5)) == 1  # shorter than k: one shingle, so only exact matches
    assert len(shingles("abcdef", unit="char", k=3)) == 4
    with pytest.raises(GenzooError, match="unit"):
        shingles("x", unit="line")


def test_planted_duplicates_are_found_and_distinct_texts_kept(planted):
    r = dedup_texts(planted, threshold=0.7)
    truth = {i: None for i in range(60)}
    assert set(r.duplicate_of) == set(range(60, 90))  # recall 1 and no false merge on known answers
    for i in range(60, 80):
        assert r.duplicate_of[i].of == i - 60 and r.duplicate_of[i].how == "near"
    for i in range(80, 90):
        assert r.duplicate_of[i].of == i - 60 and r.duplicate_of[i].how == "exact"
    assert r.keep == list(range(60)) + list(range(90, 100)) and truth
    assert r.exact_duplicates == 10 and r.near_duplicates == 20 and len(r.clusters) == 30


def test_minhash_agrees_with_exact_jaccard_ground_truth(planted):
    sets = [shingles(t) for t in planted]
    truth = {(i, j) for i, j in itertools.combinations(range(len(planted)), 2) if jaccard(sets[i], sets[j]) >= 0.88}
    assert 20 <= len(truth) < 30  # one-word edits (0.92) and exact copies; most two-word edits (0.84) fall below
    r = dedup_texts(planted, threshold=0.88)
    found = {(d.of, i) for i, d in r.duplicate_of.items()}
    assert found <= truth and len(found) >= len(truth) - 1  # precision 1; LSH may miss a pair near the threshold
    for i, d in r.duplicate_of.items():  # every merge holds at the threshold, by the exact measure
        assert jaccard(sets[i], sets[d.of]) >= 0.8


def test_near_dedup_can_be_turned_off_and_bad_settings_refused(planted):
    r = dedup_texts(planted, near=False)
    assert r.near_duplicates == 0 and r.exact_duplicates == 10
    with pytest.raises(GenzooError, match="threshold"):
        dedup_texts(planted, threshold=1.5)
    with pytest.raises(GenzooError, match="verify"):
        dedup_texts(planted, verify="maybe")


def test_incremental_index_for_stored_generations(planted):
    index = NearDuplicateIndex(threshold=0.7)
    for i in range(60):
        index.add(f"gen-{i}", planted[i])
    assert index.query(planted[3])[0] == ("gen-3", "exact", 1.0)
    near = index.query(planted[65])
    assert near and near[0][0] == "gen-5" and near[0][1] == "near"
    assert index.query(planted[95]) == []  # related (Jaccard ~0.3), not a duplicate
    # signatures persist: an index rebuilt from them answers the same
    rebuilt = NearDuplicateIndex(threshold=0.7)
    for i in range(60):
        rebuilt.add(f"gen-{i}", planted[i], signature=index.signature(planted[i]))
    assert rebuilt.query(planted[65])[0][0] == "gen-5"
    with pytest.raises(GenzooError, match="already"):
        index.add("gen-0", "again")


def test_vectors_exact_and_near():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 16))
    noisy = base[:5] + 0.01 * rng.normal(size=(5, 16))  # cosine about 0.9998
    x = np.concatenate([base, base[5:8], noisy, np.zeros((2, 16))])
    r = dedup_vectors(x, threshold=0.99)
    assert {i: d.of for i, d in r.duplicate_of.items()} == {50: 5, 51: 6, 52: 7, 53: 0, 54: 1, 55: 2, 56: 3, 57: 4, 59: 58}
    assert [r.duplicate_of[i].how for i in (50, 53, 59)] == ["exact", "near", "exact"]
    assert r.keep == list(range(50)) + [58]  # random Gaussian rows: cosine ~0 +- 0.25, never merged
    with pytest.raises(GenzooError, match="numeric"):
        dedup_vectors(["a", "b"])


def run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_cli_cleans_a_jsonl_corpus_that_then_trains(tmp_path, planted):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in planted))
    clean = tmp_path / "clean.jsonl"
    report = json.loads(run("dedup", data, "--threshold", "0.7", "--out", clean, "--json").output)
    assert (report["items"], report["kept"], report["exact_duplicates"], report["near_duplicates"]) == (100, 70, 10, 20)
    kept = [json.loads(line)["text"] for line in clean.read_text().splitlines()]
    # items are read split by split (train first), so which copy survives may differ; one of each group does
    groups = [{planted[i], planted[i + 60]} for i in range(30)] + [{planted[i]} for i in list(range(30, 60)) + list(range(90, 100))]
    assert len(kept) == len(groups) and all(len(g & set(kept)) == 1 for g in groups)
    from genzoo.data import load_dataset

    assert load_dataset(str(clean), "train").meta["documents"] > 50
    run("train", "gpt", "--data", clean, "--steps", 2, "--batch-size", 4, "--out", tmp_path / "run", "--no-eval",
        "--val-every", 0, *TINY_GPT)
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_cli_cleans_an_image_array_that_then_trains(tmp_path):
    from genzoo.data import load_dataset

    x = load_dataset("digits", "train").x.numpy()[:120].astype(np.int64)
    y = load_dataset("digits", "train").y.numpy()[:120]
    x = np.concatenate([x, x[:6], np.minimum(x[6:10] + (x[6:10] == 0), 16)])  # 6 exact, 4 nearly equal copies
    y = np.concatenate([y, y[:6], y[6:10]])
    src = tmp_path / "digits.npz"
    np.savez(src, x=x, y=y)
    clean = tmp_path / "clean.npz"
    report = json.loads(run("dedup", src, "--threshold", "0.95", "--out", clean, "--json").output)
    assert report["exact_duplicates"] == 6 and report["near_duplicates"] >= 4 and report["kept"] <= 120
    d = load_dataset(str(clean), "train")
    assert d.kind == "image" and d.levels == 17 and d.num_classes == 10
    run("train", "vae", "--data", clean, "--steps", 2, "--batch-size", 8, "--out", tmp_path / "run", "--no-eval",
        "--val-every", 0)
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_cli_refuses_bad_output_paths(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a b c"}\n')
    assert "must end in .jsonl or .txt" in run("dedup", data, "--out", tmp_path / "x.npz", ok=False).output
    assert "overwrite the input" in run("dedup", data, "--out", data, ok=False).output


def test_cli_a_single_text_file_is_deduplicated_by_paragraph(tmp_path):
    paragraphs = ["The kettle boiled while we argued about the map.",
                  "Quarterly revenue rose on strong demand for widgets.",
                  "Photosynthesis converts light energy into chemical energy in plants.",
                  "She tuned the violin before the evening concert began."]
    data = tmp_path / "notes.txt"
    data.write_text("\n\n".join(paragraphs + [paragraphs[1].upper(), paragraphs[2].replace("plants", "plant")]))
    clean = tmp_path / "clean.txt"
    report = json.loads(run("dedup", data, "--unit", "char", "--k", "4", "--out", clean, "--json").output)
    assert (report["items"], report["exact_duplicates"], report["near_duplicates"]) == (6, 1, 1)
    assert clean.read_text().strip() == "\n\n".join(paragraphs)
    from genzoo.data import load_dataset

    assert load_dataset(str(clean), "train").meta["characters"] > 100
