"""Forward + backward time and peak memory of every attention variant over sequence lengths, on packed
sequences (several documents per row, so document masking is exercised), and where each variant
becomes cheaper than SDPA.

    python bench/attention.py                      # CPU: 256 .. 8192, small batch/heads/dim
    python bench/attention.py --device cuda        # GPU: 512 .. 32768

CPU peak memory is the growth of the process's peak RSS while one (variant, length) runs in a fresh
forked child, so runs do not see each other's high-water marks. On CUDA it is
torch.cuda.max_memory_allocated over the run.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import resource
import time

import torch

from thresher.training.attention import build_attention

VARIANTS = {
    "sdpa": {},
    "sliding_window": {"window": 256, "global_tokens": 4},
    "performer": {"features": 128, "chunk": 128},
    "linformer": {"chunk": 256, "rank": 16},
    "reformer": {"buckets": 8, "chunk": 128, "hashes": 2},
}


def packed_doc_ids(batch: int, seq: int, mean_doc: int, seed: int) -> torch.Tensor:
    """Document ids of packed rows with geometric-ish document lengths around ``mean_doc``."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        ids, doc, pos = [], 0, 0
        while pos < seq:
            n = int(torch.randint(mean_doc // 4, mean_doc * 7 // 4 + 1, (1,), generator=g))
            ids += [doc] * min(n, seq - pos)
            pos, doc = pos + n, doc + 1
        rows.append(ids)
    return torch.tensor(rows)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(name: str, seq: int, args) -> tuple[float, float]:
    """(seconds per forward+backward, peak MB) for one variant at one length; min over repeats."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    attn = build_attention(name, args.head_dim, **VARIANTS[name]).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = (args.batch, args.heads, seq, args.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    docs = None if args.no_docs else packed_doc_ids(args.batch, seq, args.mean_doc, 0).to(device)

    def step():
        out = attn(q, k, v, docs)
        out.float().square().mean().backward()
        for t in (q, k, v):
            t.grad = None

    step()  # warm-up (and FlexAttention compilation on CUDA)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return min(times), max(peak, 0) / 2**20


def failure_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def _child(conn, name, seq, args):
    try:
        conn.send(measure(name, seq, args))
    except Exception as exc:  # an OOM or an unsupported size is a table entry, not a crash
        conn.send(failure_text(exc))
    conn.close()


def allow_recompiles() -> None:
    """FlexAttention and its block masks are compiled per shape (``dynamic=False``): a sweep over 7
    lengths x 2 variants exceeds dynamo's default of 8 recompiles, after which flex_attention runs
    eagerly, materialises the whole score matrix and fails at long lengths for the wrong reason."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def run_isolated(name: str, seq: int, args):
    if args.device == "cuda":  # CUDA cannot be re-initialised in forked children; peak stats reset instead
        try:
            return measure(name, seq, args)
        except Exception as exc:  # an OOM or a kernel that fails to compile is a table entry, not a crash
            failure = "OOM" if isinstance(exc, torch.OutOfMemoryError) else failure_text(exc)
        # out of the except block the traceback, and the tensors its frames hold, are gone
        gc.collect()
        torch.cuda.empty_cache()
        return failure
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_child, args=(child, name, seq, args))
    proc.start()
    result = parent.recv() if parent.poll(args.timeout) else "timeout"
    proc.join(1)
    if proc.is_alive():
        proc.kill()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--lengths", type=int, nargs="*", help="default: 256..8192 on CPU, 512..32768 on CUDA")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=None, help="default 2 on CPU, 12 on CUDA")
    p.add_argument("--head-dim", type=int, default=None, help="default 32 on CPU, 64 on CUDA")
    p.add_argument("--mean-doc", type=int, default=1024, help="mean document length in the packed rows")
    p.add_argument("--no-docs", action="store_true", help="one document per row (pure causal)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per (variant, length) on CPU")
    args = p.parse_args()
    gpu = args.device == "cuda"
    args.heads = args.heads or (12 if gpu else 2)
    args.head_dim = args.head_dim or (64 if gpu else 32)
    lengths = args.lengths or ([512, 1024, 2048, 4096, 8192, 16384, 32768] if gpu else [256, 512, 1024, 2048, 4096, 8192])
    if gpu:
        torch.set_float32_matmul_precision("high")
        allow_recompiles()
    torch.set_num_threads(torch.get_num_threads())

    results: dict[str, dict[int, object]] = {name: {} for name in args.variants}
    for seq in lengths:
        for name in args.variants:
            results[name][seq] = run_isolated(name, seq, args)

    device_name = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    docs = "one document per row" if args.no_docs else f"packed documents, mean length {args.mean_doc}"
    print(f"\nAttention forward+backward, {device_name}; batch {args.batch}, heads {args.heads}, "
          f"head_dim {args.head_dim}, {docs}; ms / peak MB (min of {args.repeats})\n")
    print("| variant | params | " + " | ".join(str(n) for n in lengths) + " | faster than sdpa from | "
          "less memory than sdpa from |")
    print("| --- | --- | " + " | ".join("---" for _ in lengths) + " | --- | --- |")
    for name in args.variants:
        cells = []
        for seq in lengths:
            r = results[name][seq]
            cells.append(f"{r[0] * 1e3:.1f} / {r[1]:.0f}" if isinstance(r, tuple) else str(r))
        if name == "sdpa":
            crossings = ["reference", "reference"]
        else:
            crossings = [crossing(results[name], results.get("sdpa", {}), lengths, i) for i in (0, 1)]
        params = ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "-"
        print(f"| {name} | {params} | " + " | ".join(cells) + f" | {crossings[0]} | {crossings[1]} |")


def crossing(mine: dict, ref: dict, lengths: list[int], field: int) -> str:
    """The shortest length from which this variant stays cheaper than SDPA at every longer length
    (an SDPA failure, e.g. OOM, counts as SDPA losing); "-" if it never does."""
    def cheaper(seq):
        a, b = mine.get(seq), ref.get(seq)
        if not isinstance(a, tuple):
            return False
        return not isinstance(b, tuple) or a[field] < b[field]

    start = None
    for seq in lengths:
        if cheaper(seq):
            start = seq if start is None else start
        else:
            start = None
    return str(start) if start is not None else "-"


if __name__ == "__main__":
    main()
