"""Synthetic data: the ``synthetic`` corpus stage and its generators, which turn example indices
into documents.

- ``stage``: the ``synthetic`` stage (a Beam PTransform; registered as
  ``thresher.pipeline.synthetic.stage:Synthetic``);
- ``templates`` (with ``vocab``, its word lists and units, and ``checks``, its answer checkers):
  the ``template`` generator;
- ``lm``: the ``lm`` generator, sampling a local causal LM through ``thresher.training.sampling``;
- ``openai``: the ``openai`` generator and its HTTP client with a disk cache;
- ``base``: what the generators share (``Generated``, prompt and YAML loading).

Every generator maps example index ``n`` to the same output whatever batch or worker it lands in,
seeded from (seed, n) with a stable hash. Only ``stage`` imports Beam; this file imports nothing,
so the generators load without it.
"""
