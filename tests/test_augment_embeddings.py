import json
import random

import pytest

from thresher.filters import embeddings
from thresher.pipeline.augment import Augment
from thresher.pipeline.cli import main as cli_main

# Two groups of interchangeable words in identical contexts: skip-gram puts each group together.
ANIMALS = ["cat", "kitten", "feline", "kitty"]
VEHICLES = ["car", "automobile", "vehicle", "sedan"]


def corpus(n=20000, seed=0):
    r = random.Random(seed)
    fill = "i you we they saw found liked noticed near behind today yesterday there here".split()
    verbs = {0: "purrs sleeps meows eats plays hides jumps naps scratches stretches".split(),
             1: "drives parks stalls speeds brakes turns honks idles accelerates crashes".split()}
    out = []
    for _ in range(n):
        g = r.randrange(2)
        target = r.choice(ANIMALS if g == 0 else VEHICLES)
        words = [r.choice(fill) for _ in range(3)] + ["the", target, r.choice(verbs[g])] + [r.choice(fill) for _ in range(3)]
        out.append(" ".join(words) + ".")
    return out


@pytest.fixture(scope="module")
def model():
    return embeddings.train_skipgram(corpus(), dim=16, epoch=5, min_count=5, window=2, threads=1, bucket=20000)


def test_nearest_neighbours_group_the_interchangeable_words(model):
    table = embeddings.nearest_neighbour_synonyms(model, neighbours=3, min_similarity=0.5)
    for group in (ANIMALS, VEHICLES):
        for word in group:
            assert word in table, word
            other_group = VEHICLES if group is ANIMALS else ANIMALS
            assert len(set(table[word]) & (set(group) - {word})) >= 2, (word, table[word])
            assert not set(table[word]) & set(other_group), (word, table[word])
    strict = embeddings.nearest_neighbour_synonyms(model, neighbours=3, min_similarity=0.9999)
    assert sum(len(v) for v in strict.values()) < sum(len(v) for v in table.values())


def test_stems_are_not_synonyms():
    assert embeddings._shares_stem("house", "houses")
    assert embeddings._shares_stem("run", "running")
    assert not embeddings._shares_stem("cat", "kitten")


def test_synonym_file_formats(tmp_path):
    (tmp_path / "s.txt").write_text("# comment\nBig: large, huge\nsmall little  tiny # trailing\n\n")
    assert embeddings.load_synonyms(tmp_path / "s.txt") == {"big": ["large", "huge"], "small": ["little", "tiny"]}
    (tmp_path / "s.json").write_text(json.dumps({"Fast": ["quick", "fast", "rapid"]}))
    assert embeddings.load_synonyms(tmp_path / "s.json") == {"fast": ["quick", "rapid"]}
    (tmp_path / "bad.json").write_text(json.dumps({"a": "b"}))
    with pytest.raises(ValueError, match="not a list of strings"):
        embeddings.load_synonyms(tmp_path / "bad.json")
    (tmp_path / "bad.txt").write_text("ok fine\nlonely\n")
    with pytest.raises(ValueError, match="line 2.*no synonyms"):
        embeddings.load_synonyms(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="cannot read"):
        embeddings.load_synonyms(tmp_path / "missing.txt")


def test_train_embeddings_command_and_augment_with_the_result(tmp_path):
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(corpus(20000, 1))))
    out = tmp_path / "emb"
    code = cli_main(["train-embeddings", str(data), "--out", str(out), "--dim", "16", "--epoch", "5",
                     "--window", "2", "--bucket", "20000", "--min-similarity", "0.5", "--neighbours", "3"])
    assert code == 0
    table = embeddings.load_synonyms(out / "synonyms.json")
    assert set(table["kitten"]) & set(ANIMALS)
    assert (out / "embeddings.bin").is_file()
    assert cli_main(["train-embeddings", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 1

    only_synonyms = {"synonym_replace": {"p": 1.0, "rate": 1.0}, "random_insert": {"p": 0}, "random_swap": {"p": 0},
                     "random_delete": {"p": 0}, "char_noise": {"p": 0}, "sentence_shuffle": {"p": 0}}
    doc = {"id": "d", "text": "The kitten sleeps. The sedan parks.", "source": "x", "meta": {}}
    for source in ({"synonyms": str(out / "synonyms.json")},
                   {"embeddings": str(out / "embeddings.bin"), "min_similarity": 0.5, "neighbours": 3}):
        stage = Augment(ops=only_synonyms, **source)
        copy = stage.copies_of(doc, stage.build_augmenter(), seed=0)[0]
        words = copy["text"].replace(".", "").split()
        table = stage.load_synonyms()
        assert words[1] in table["kitten"] and words[4] in table["sedan"]
        assert words[1] in ANIMALS and words[4] in VEHICLES
