from __future__ import annotations

import numpy as np
import pytest
import torch

from thresher.training.config import ActiveSamplerConfig, CurriculumSamplerConfig
from thresher.training.samplers import (
    ActiveSampler,
    CurriculumSampler,
    DocumentPool,
    UniformSampler,
    competence,
)


def pool_of(lengths: list[int], **scores) -> DocumentPool:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.arange(offsets[-1], dtype=np.int64) % 50
    return DocumentPool(tokens, offsets, [f"d{i}" for i in range(len(lengths))],
                        {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()})


@pytest.mark.parametrize("pacing", ["linear", "root", "step", "exponential"])
def test_pacing_grows_from_start_competence_to_one(pacing):
    values = [competence(s, pacing, 0.1, 100) for s in range(0, 121, 5)]
    assert values[0] == pytest.approx(0.1)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[-1] == 1.0 and competence(100, pacing, 0.1, 100) == pytest.approx(1.0)


def test_pacing_shapes_differ_as_published():
    # root front-loads new data, exponential back-loads it, step holds plateaus
    assert competence(25, "root", 0.1, 100) > competence(25, "linear", 0.1, 100) > competence(25, "exponential", 0.1, 100)
    assert competence(10, "step", 0.1, 100, step_count=4) == competence(20, "step", 0.1, 100, step_count=4) == 0.1


def test_uniform_sampler_visits_every_document_once_per_epoch_split_across_ranks():
    ranks = [UniformSampler(10, seed=1, rank=r, world=2) for r in range(2)]
    drawn = [s.next_index() for _ in range(5) for s in ranks]
    assert sorted(drawn) == list(range(10))


def test_curriculum_draws_only_the_easiest_documents_first():
    quality = np.arange(100.0)[::-1]  # document 99 is the "easiest" by quality ascending
    pool = pool_of([5] * 100, quality=quality)
    cfg = CurriculumSamplerConfig(name="curriculum", difficulty="quality", pacing="linear",
                                  start_competence=0.1, pacing_steps=10)
    sampler = CurriculumSampler(pool, cfg, total_steps=20, seed=0)
    sampler.set_step(0)
    early = {sampler.next_index() for _ in range(200)}
    assert early == set(range(90, 100))  # the 10% with the lowest quality value
    sampler.set_step(10)
    late = {sampler.next_index() for _ in range(2000)}
    assert len(late) > 90


def test_curriculum_missing_scores_go_last_and_unknown_column_is_an_error():
    pool = pool_of([5] * 4, quality=[np.nan, 1.0, 2.0, 3.0])
    cfg = CurriculumSamplerConfig(name="curriculum", difficulty="quality", start_competence=0.75, pacing_steps=5)
    sampler = CurriculumSampler(pool, cfg, total_steps=10, seed=0)
    assert 0 not in {sampler.next_index() for _ in range(100)}
    with pytest.raises(ValueError, match="no per-document score column 'ref_loss'"):
        CurriculumSampler(pool, cfg.model_copy(update={"difficulty": "ref_loss"}), total_steps=10, seed=0)


def test_sequence_length_warmup():
    cfg = CurriculumSamplerConfig(name="curriculum", seq_len_start=64, seq_len_warmup_steps=10)
    sampler = CurriculumSampler(pool_of([5] * 4), cfg, total_steps=100, seed=0)
    lengths = [sampler.seq_len_at(s, 256) for s in range(12)]
    assert lengths[0] == 64 and lengths[5] == 160 and lengths[10:] == [256, 256]
    assert all(length % 8 == 0 for length in lengths)


def test_active_sampler_prefers_high_loss_documents_with_unbiasing_weights():
    pool = pool_of([5] * 10)
    cfg = ActiveSamplerConfig(name="active", epsilon=0.1, alpha=1.0, beta=1.0, ema=1.0)
    sampler = ActiveSampler(pool, cfg, seed=0)
    sampler.update(np.arange(10), np.array([0.1] * 9 + [5.0]))
    p = sampler.probabilities()
    assert p.sum().item() == pytest.approx(1.0)
    assert p[9] > 0.5 and p[0] >= 0.1 / 10  # the floor keeps every document reachable
    draws = [sampler.next_index() for _ in range(500)]
    assert draws.count(9) > 250
    idx = torch.tensor([[0, 0, 9, 9]])
    w = sampler.weights(idx)
    assert w.mean().item() == pytest.approx(1.0)
    # weights are proportional to 1 / p: a document drawn rarely counts for more
    assert w[0, 0] / w[0, 2] == pytest.approx((p[9] / p[0]).item(), rel=1e-5)


def test_rho_priority_is_training_minus_reference_loss():
    pool = pool_of([5] * 3, ref_loss=[0.0, 2.0, 4.0])
    cfg = ActiveSamplerConfig(name="active", priority="rho", epsilon=0.0, ema=1.0)
    sampler = ActiveSampler(pool, cfg, seed=0)
    sampler.update(np.arange(3), np.array([1.0, 3.0, 4.0]))
    # reducible: 1.0, 1.0, 0.0 (clamped to a small floor): the learnt-out document 2 is rarely drawn
    pr = sampler.priorities()
    assert pr[0] == pytest.approx(1.0) and pr[1] == pytest.approx(1.0) and pr[2] < 0.01
    with pytest.raises(ValueError, match="lack 'ref_loss'"):
        ActiveSampler(pool_of([5] * 2, ref_loss=[1.0, np.nan]), cfg, seed=0)


def test_sampler_state_round_trips_through_torch_save(tmp_path):
    pool = pool_of([5] * 20)
    sampler = ActiveSampler(pool, ActiveSamplerConfig(name="active"), seed=4)
    sampler.update(np.arange(20), np.linspace(0, 3, 20))
    [sampler.next_index() for _ in range(7)]
    torch.save(sampler.state_dict(), tmp_path / "s.pt")
    expected = [sampler.next_index() for _ in range(20)]
    restored = ActiveSampler(pool, ActiveSamplerConfig(name="active"), seed=999)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert [restored.next_index() for _ in range(20)] == expected
