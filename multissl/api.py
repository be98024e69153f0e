"""``pretrain``: raw data in, pretrained :class:`SSLModel` out."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from multissl.adapters import Adapter, get_adapter
from multissl.errors import ConfigError
from multissl.model import SSLModel
from multissl.trainer import KNNMonitor, TrainConfig, Trainer

#: under ``on_bad_record="skip"``, every skipped record of the run, in its output folder
SKIPPED_RECORDS_FILE = "skipped_records.json"


def pretrain(
    data: Any,
    adapter: Union[str, Adapter] = "image",
    method: Optional[str] = None,
    *,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    seed: int = 0,
    output_dir: Optional[str] = None,
    encoder: Optional[Union[str, nn.Module]] = None,
    encoder_kwargs: Optional[Dict[str, Any]] = None,
    embed_dim: Optional[int] = None,
    method_kwargs: Optional[Dict[str, Any]] = None,
    adapter_config: Optional[Dict[str, Any]] = None,
    knn_data: Optional[Tuple[Any, Any, Any, Any]] = None,
    streaming: Union[bool, Dict[str, Any]] = False,
    on_bad_record: str = "raise",
    positives: Any = None,
    **train_options: Any,
) -> SSLModel:
    """Pretrain an encoder on unlabeled ``data`` and return it as an :class:`SSLModel`.

    Args:
        data: anything the adapter accepts (see ``docs/adapters``), with no wrapping.
        adapter: an adapter name (``list_adapters()``) or an instance.
        method: a method name (``multissl.methods.list_methods()``); default: the adapter's recommendation.
        epochs, batch_size: default: the adapter's recommendation (batch_size is per process).
        seed: seeds weights, data order and augmentations; the same seed reproduces the run.
        output_dir: where checkpoints, logs and ``final/`` (the saved model) go; nothing is written if None.
        encoder: a name the adapter knows (``adapter.encoder_names()``) or any ``nn.Module`` mapping a
            transformed batch to (B, D) (give ``embed_dim=`` if it has no ``embed_dim`` attribute).
        method_kwargs: method hyperparameters (temperature, projection sizes, ...).
        adapter_config: adapter options (augmentation strengths, image size, ...).
        knn_data: ``(x_train, y_train, x_val, y_val)`` raw labelled data for the online kNN monitor.
        streaming: read ``data`` (Parquet files, a folder or glob of them) batch by batch from disk
            instead of decoding it all up front, for data larger than memory; True, or a dict of
            :class:`multissl.streaming.ParquetStream` options (``column``, ``shuffle_window``,
            ``prefetch``, ``fit_rows``). The adapter's statistics come from ``fit_rows`` rows.
        on_bad_record: ``"raise"`` (default) stops at the first bad record with a ``DataError`` naming it;
            ``"skip"`` leaves bad records out (of ``data`` and of ``knn_data``, labels included), warns
            once with their count and the first few, and records them in the model config
            (``training.skipped_records``) and in ``<output_dir>/skipped_records.json``.
        positives: an (N, K) array of record indices, one row per record of ``data``: the second view of
            record i is an augmented view of one of ``positives[i]`` (drawn each step) instead of i itself,
            e.g. its nearest neighbours under a distance that needs no labels
            (:func:`multissl.positives.mutual_neighbours`). Siamese methods only; in-memory data only.
        **train_options: any :class:`multissl.trainer.TrainConfig` field (lr, optimizer, mixed_precision,
            grad_accum_steps, checkpoint_every, resume, trackers, progress, ...).
    """
    from multissl.adapters import get_adapter_class
    from multissl.bad_records import BadRecordPolicy, check_on_bad_record, prepare_with_policy
    from multissl.methods import build_method, get_method_class

    check_on_bad_record(on_bad_record)
    if positives is not None and on_bad_record != "raise":
        raise ConfigError("positives index the records of data; they cannot be combined with on_bad_record='skip'")

    if isinstance(adapter, Adapter) and adapter_config:
        raise ConfigError("pass adapter_config only with an adapter name, not with an adapter instance")
    adapter_cls = type(adapter) if isinstance(adapter, Adapter) else get_adapter_class(adapter)
    defaults = dict(adapter_cls.defaults)
    method = method or defaults.get("method", "simclr")
    method_cls = get_method_class(method)
    if getattr(method_cls, "input_kind", "views") == "tokens":
        defaults.update(getattr(adapter_cls, "token_defaults", {}))  # e.g. a ViT instead of a ResNet
    if isinstance(adapter, Adapter):
        ad = adapter
    else:
        # a method may recommend adapter settings (e.g. light augmentation for pretext tasks);
        # the caller's adapter_config wins
        recommended = dict(getattr(method_cls, "adapter_defaults", {}).get(adapter_cls.name, {}))
        ad = get_adapter(adapter, **{**recommended, **(adapter_config or {})})
    if ad.supported_methods is not None and method not in ad.supported_methods:
        raise ConfigError(f"adapter {ad.name!r} does not support method {method!r}; "
                          f"supported: {', '.join(ad.supported_methods)}")
    valid = set(TrainConfig.__dataclass_fields__)
    unknown = set(train_options) - valid
    if unknown:
        raise ConfigError(f"unknown pretrain option(s): {', '.join(sorted(unknown))}")
    config = TrainConfig(epochs=epochs or defaults.get("epochs", 100), batch_size=batch_size or defaults.get("batch_size", 256),
                         seed=seed, output_dir=output_dir, **train_options)

    from multissl.streaming import ParquetStream

    policy = BadRecordPolicy(on_bad_record)
    if streaming or isinstance(data, ParquetStream):
        if policy.skip:
            raise ConfigError("on_bad_record='skip' is not supported with streaming (a stream decodes batch by batch)")
        options = streaming if isinstance(streaming, dict) else {}
        allowed = {"column", "shuffle_window", "prefetch", "fit_rows"}
        if set(options) - allowed:
            raise ConfigError(f"unknown streaming option(s) {', '.join(sorted(set(options) - allowed))}; "
                              f"valid: {', '.join(sorted(allowed))}")
        prepared = data if isinstance(data, ParquetStream) else ParquetStream(data, ad, **options)
        prepared.adapter = ad
        ad.fit(prepared.sample())  # a bounded sample; its decoding also fixes sizes/channels in the config
    else:
        prepared = prepare_with_policy(ad, data, policy)
        ad.fit(prepared)

    torch.manual_seed(seed)
    if encoder is None or isinstance(encoder, str):
        enc_name = encoder or defaults.get("encoder")
        enc_kwargs = dict(encoder_kwargs or {})
        enc = ad.build_encoder(enc_name, **enc_kwargs)
        enc_spec: Dict[str, Any] = {"name": enc_name or getattr(enc, "name", None), "kwargs": enc_kwargs}
    elif isinstance(encoder, nn.Module):
        enc = encoder
        enc_spec = {"name": None, "class": f"{type(enc).__module__}.{type(enc).__qualname__}"}
    else:
        raise ConfigError(f"encoder must be a name or a torch.nn.Module, got {type(encoder).__name__}")
    dim = embed_dim or ad.embed_dim(enc)
    mk = {**getattr(ad, "method_defaults", {}).get(method, {}), **(method_kwargs or {})}
    m = build_method(method, enc, dim, **mk)

    knn = None
    knn_policy = BadRecordPolicy(on_bad_record)  # the monitor's own records, counted apart from data's
    if knn_data is not None:
        xtr, ytr, xva, yva = knn_data
        parts = []
        for split, x, y in (("train", xtr, ytr), ("val", xva, yva)):
            p = BadRecordPolicy(on_bad_record)
            px = prepare_with_policy(ad, x, p)
            parts += [px, torch.as_tensor(p.drop_skipped(np.asarray(y)))]  # labels keep their records' rows
            knn_policy.skipped += [replace(s, record=f"{split} {s.record}") for s in p.skipped]
        knn = KNNMonitor(*parts)

    trainer = Trainer(m, ad, config)
    if os.environ.get("RANK", "0") == "0":  # once per run, not once per process
        policy.warn(stacklevel=3)  # one line each, before the long part starts
        knn_policy.warn("knn_data records", stacklevel=3)
    t0 = time.perf_counter()
    history = trainer.fit(prepared, knn=knn, positives=positives)
    seconds = time.perf_counter() - t0
    n = len(prepared) if not isinstance(prepared, dict) else len(next(iter(prepared.values())))
    training = {"epochs": config.epochs, "batch_size": config.batch_size, "seed": seed, "num_records": n,
                **({"streaming": True} if streaming else {}),
                **({"skipped_records": _skipped_summary(policy, knn_policy)} if policy.skip else {}),
                "train_seconds": round(seconds, 1), **trainer.resolved}
    model = SSLModel(ad, m.encoder, {"adapter": ad.name, "method": method, "method_hparams": m.hparams(),
                                     "encoder": enc_spec, "embed_dim": dim, "training": training,
                                     "history": history})
    acc = trainer.accelerator
    if output_dir and acc.is_main_process:
        final_metrics = {k: v for k, v in (history[-1] if history else {}).items() if k in ("loss", "knn_acc")}
        model.save_pretrained(f"{output_dir}/final", metrics={f"final_{k}": v for k, v in final_metrics.items()})
        if policy.skip:
            from pathlib import Path

            from multissl.evaluation.few_labels import write_json_atomic

            report = policy.to_json()
            if knn_policy.skipped:
                report["knn_data"] = knn_policy.to_json()
            write_json_atomic(Path(output_dir) / SKIPPED_RECORDS_FILE, report)
    acc.wait_for_everyone()
    model.encoder.eval()
    return model


def _skipped_summary(policy: Any, knn_policy: Any) -> Dict[str, Any]:
    """For the model config: the count and first few skipped records of ``data`` (and of
    ``knn_data`` when it lost any)."""
    summary = policy.summary()
    if knn_policy.skipped:
        summary["knn_data"] = knn_policy.summary()
    return summary
