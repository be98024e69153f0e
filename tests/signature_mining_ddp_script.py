"""Run by tests/recipes/test_signature_verification.py under ``accelerate launch --multi_gpu
--num_processes 2`` (CPU, gloo) as ``signature_mining_ddp_script.py DATA_FOLDER OUT_PREFIX``:
the recipe's all-pairs mining DTW, each process saving the matrix it ends with and how many
pairs it computed itself."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import multissl.evaluation.dtw as dtw_module  # noqa: E402
from multissl.distributed import process_state  # noqa: E402
from multissl.recipes import signature_verification as recipe  # noqa: E402

if __name__ == "__main__":
    data, out = sys.argv[1], sys.argv[2]
    state = process_state()
    computed = []
    real = dtw_module.dtw_pairs

    def counting(x, lengths, first, second, *a, **k):
        computed.append(len(first))
        return real(x, lengths, first, second, *a, **k)

    dtw_module.dtw_pairs = counting
    d = recipe.mining_distances(recipe.load_corpus(data, 6, 4), state.is_main_process, state.device)
    np.save(f"{out}.rank{state.process_index}.npy", d)
    Path(f"{out}.rank{state.process_index}.json").write_text(
        json.dumps({"world": state.num_processes, "pairs": sum(computed)}))
