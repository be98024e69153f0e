"""``multissl demo --modality text``: the main job on a text corpus every Python install ships.

The corpus: the docstrings of the Python standard library (first paragraph of every public
function, class and method of a few modules), labelled by the area the module belongs to --
``text`` (re, string, textwrap, ...), ``files`` (os, shutil, pathlib, ...), ``math`` (math,
statistics, fractions, ...), ``network`` (urllib, http, email, socket, ...). About 900 short,
real English texts, no download. The demo

1. pretrains the text Transformer on every docstring **without labels** (SimCSE-style simclr:
   the two views are the same ids, the encoder's dropout makes them differ);
2. holds out a stratified 30% test split; draws k = 4, 16 labelled docstrings per class for 3
   seeds;
3. compares on identical labelled subsets (:mod:`multissl.evaluation.few_labels`): bag of
   words + logistic regression, the same encoder from scratch (same augmentation and budget),
   the SSL encoder frozen + logistic regression, and fine-tuned;
4. prints the table, writes ``metrics.json`` and ``accuracy_vs_labels.png``.

The texts depend a little on the Python version (docstrings change between releases); the
corpus size is printed.
"""
from __future__ import annotations

import importlib
import inspect
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

#: area -> standard-library modules whose docstrings belong to it
STDLIB_AREAS: Dict[str, List[str]] = {
    "text": ["re", "string", "textwrap", "difflib", "unicodedata", "codecs", "html", "html.parser"],
    "files": ["os", "shutil", "pathlib", "glob", "tempfile", "zipfile", "tarfile", "filecmp", "io"],
    "math": ["math", "cmath", "statistics", "fractions", "decimal", "random", "numbers"],
    "network": ["urllib.request", "urllib.parse", "http.client", "http.server", "email.message", "smtplib",
                "socket", "ftplib", "ssl"],
}


def stdlib_docstrings(min_words: int = 4) -> Tuple[List[str], np.ndarray, List[str]]:
    """(texts, labels, area names): the first paragraph of each public docstring, deduplicated."""
    areas = list(STDLIB_AREAS)
    texts: List[str] = []
    labels: List[int] = []
    seen = set()
    for label, area in enumerate(areas):
        for module_name in STDLIB_AREAS[area]:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # a Python built without e.g. ssl
                continue
            for name in sorted(vars(module)):
                obj = getattr(module, name)
                if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                    continue
                owner = str(getattr(obj, "__module__", "") or "")
                if owner and not owner.startswith(module_name.split(".")[0]) and owner.lstrip("_") != module_name:
                    continue  # re-exported from elsewhere
                members = [obj]
                if inspect.isclass(obj):
                    members += [v for k, v in sorted(vars(obj).items()) if not k.startswith("_") and callable(v)]
                for member in members:
                    doc = inspect.getdoc(member)
                    if not doc:
                        continue
                    para = " ".join(doc.strip().split("\n\n")[0].split())
                    if len(para.split()) < min_words or para in seen:
                        continue
                    seen.add(para)
                    texts.append(para)
                    labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64), areas


def text_demo(output: str, *, epochs: Optional[int] = None, seeds: int = 3, method: Optional[str] = None,
              progress: bool = True) -> Dict[str, Any]:
    """Run the demo (see the module docstring); ``epochs`` / ``method`` override the budget."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split

    from multissl.adapters.text import TextAdapter
    from multissl.api import pretrain
    from multissl.evaluation import FinetuneConfig
    from multissl.evaluation.few_labels import (FewLabelConfig, compare_few_labels, format_table, gains,
                                                plot_accuracy, write_json_atomic)
    from multissl.trainer import embed_prepared

    t0 = time.perf_counter()
    texts, labels, areas = stdlib_docstrings()
    method = method or "simclr"
    epochs = epochs or 15
    pool, test = train_test_split(np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=0)
    out = Path(output)
    encoder_kwargs = {"dim": 64, "depth": 2}
    print(f"multissl demo (text): {len(texts)} Python standard-library docstrings in {len(areas)} areas "
          f"({', '.join(f'{a} {int((labels == i).sum())}' for i, a in enumerate(areas))}); pretraining {method} "
          f"without labels ({epochs} epochs)")
    adapter = TextAdapter()
    adapter.fit(texts)
    prepared = adapter.encode(texts)
    model = pretrain(prepared, adapter=adapter, method=method, epochs=epochs, batch_size=64, seed=0,
                     encoder="transformer", encoder_kwargs=encoder_kwargs, output_dir=str(out), progress=progress,
                     checkpoint_every=10**9, overwrite=True)
    t_pretrain = time.perf_counter() - t0
    z = embed_prepared(model.encoder, adapter, prepared).numpy()
    # the classic reference: TF-IDF bag of words, fitted on the same unlabeled texts
    bow = TfidfVectorizer(sublinear_tf=True).fit(texts).transform(texts).toarray().astype(np.float32)
    ft = FinetuneConfig(steps=60, lr=1e-3, encoder_lr_ratio=0.5, batch_size=32)
    summary = compare_few_labels(model.encoder, model.embed_dim, adapter, prepared, labels, pool, test,
                                 build_scratch=lambda: adapter.build_encoder("transformer", **encoder_kwargs),
                                 embeddings=z, raw=bow,
                                 config=FewLabelConfig((4, 16), tuple(range(seeds)), ft))
    metrics = {
        "dataset": f"Python standard-library docstrings ({len(texts)} texts, areas {areas})",
        "test_size": int(len(test)), "method": method, "epochs": epochs, "encoder": encoder_kwargs,
        "raw_probe": "TF-IDF bag of words + logistic regression",
        "pretrain_seconds": round(t_pretrain, 1), "results": summary, "gains": gains(summary),
        "pretrain_history": model.config.get("history", []),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    print()
    print(format_table(summary, seeds).replace("raw input + logistic regression", "TF-IDF + logistic regression  "))
    print(f"\npretraining {t_pretrain:.0f} s, total {metrics['total_seconds']:.0f} s")
    write_json_atomic(out / "metrics.json", metrics)
    plot_accuracy(summary, out / "accuracy_vs_labels.png", "stdlib docstrings: SSL pretraining vs from scratch")
    print(f"wrote {out / 'metrics.json'}, {out / 'accuracy_vs_labels.png'}, model in {out / 'final'}")
    return metrics


__all__ = ["text_demo", "stdlib_docstrings", "STDLIB_AREAS"]
