"""The plain datasketch near-duplicate script that bench/dedup_vs_datasketch.py times against
`thresher run`: read JSON lines, word 5-gram shingles, MinHash.bulk (datasketch's fastest
signature path), MinHashLSH at threshold 0.8 with 128 permutations (b=9, r=13, as thresher picks),
union-find over the query results, and each removed id written with the id its cluster keeps. No
verification, no parking, no other output: the least a script can do.

    python bench/peers_datasketch_dedup.py CORPUS.jsonl REMOVED.txt
"""

import json
import sys
import time

from datasketch import MinHash, MinHashLSH


def main(corpus: str, removed_path: str) -> None:
    start, start_cpu = time.perf_counter(), time.process_time()
    ids, shingles = [], []
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            words = record["text"].split()
            ids.append(record["id"])
            shingles.append([" ".join(words[i:i + 5]).encode() for i in range(max(1, len(words) - 4))])
    signatures = MinHash.bulk(shingles, num_perm=128)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    parent = list(range(len(ids)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, signature in enumerate(signatures):
        for j in lsh.query(signature):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
        lsh.insert(i, signature)
    removed = [(ids[i], ids[find(i)]) for i in range(len(ids)) if find(i) != i]
    with open(removed_path, "w", encoding="utf-8") as out:
        out.write("".join(f"{doc_id}\t{kept}\n" for doc_id, kept in removed))
    print(json.dumps({"docs": len(ids), "removed": len(removed), "wall_s": round(time.perf_counter() - start, 2),
                      "cpu_s": round(time.process_time() - start_cpu, 2)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
