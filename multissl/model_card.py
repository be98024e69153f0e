"""The model card (README.md with Hub YAML metadata) written next to every saved model."""
from __future__ import annotations

import json
from typing import Any, Dict, List


def _yaml_list(key: str, items: List[str]) -> str:
    return f"{key}:\n" + "".join(f"- {i}\n" for i in items) if items else ""


def render_model_card(config: Dict[str, Any]) -> str:
    adapter = config.get("adapter", "unknown")
    method = config.get("method", "unknown")
    encoder = (config.get("encoder") or {}).get("name") or (config.get("encoder") or {}).get("class", "custom")
    tags = ["multissl", "self-supervised-learning", f"modality-{adapter}", f"method-{method}"]
    metrics = config.get("metrics") or {}
    training = config.get("training") or {}
    data = config.get("data_description") or f"{training.get('num_records', '?')} unlabeled {adapter} records"
    lines = ["---", "library_name: multissl", _yaml_list("tags", tags).rstrip("\n"), "pipeline_tag: feature-extraction", "---", ""]
    lines += [
        f"# {adapter} encoder pretrained with {method} (multissl)",
        "",
        f"A `{encoder}` encoder trained without labels by the `{method}` method of "
        f"[multissl](https://pypi.org/project/multissl/) on {data}. It maps {adapter} data to "
        f"{config.get('embed_dim', '?')}-dimensional embeddings for kNN search, linear probes or fine-tuning.",
        "",
        "## Use",
        "",
        "```python",
        "from multissl import SSLModel",
        'model = SSLModel.from_pretrained("<this folder or repo id>")',
        "z = model.embed(data)          # numpy float32 (N, D)",
        "encoder = model.encoder        # a plain torch.nn.Module for your own training code",
        "```",
        "",
        "## Training",
        "",
    ]
    for k in ("epochs", "batch_size", "global_batch", "optimizer", "lr", "weight_decay", "steps", "num_processes",
              "mixed_precision", "seed", "train_seconds"):
        if k in training:
            lines.append(f"- {k}: {training[k]}")
    skipped = training.get("skipped_records")
    if skipped is not None:
        lines.append(f"- bad records skipped (on_bad_record=\"skip\"): {skipped.get('count', 0)}")
    if config.get("method_hparams"):
        lines.append(f"- method hyperparameters: `{json.dumps(config['method_hparams'], default=str)}`")
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        for k, v in metrics.items():
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines.append("")
    return "\n".join(lines)
