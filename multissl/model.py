"""SSLModel: a pretrained encoder together with the adapter state that feeds it.

A saved model is a folder::

    model.safetensors   encoder weights (safetensors: loading never unpickles anything)
    config.json         adapter name + config (preprocessing state), encoder spec, method, training summary
    README.md           a model card with YAML metadata (library_name: multissl, tags, metrics)

``SSLModel.from_pretrained`` takes such a folder or a Hugging Face Hub repo id (downloaded with
``huggingface_hub.snapshot_download``, which honours ``HF_HUB_OFFLINE``, ``HF_HOME`` and tokens).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from torch import nn

from multissl.errors import ConfigError, UserError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1


class SSLModel:
    """An encoder plus its adapter. ``embed(data)`` gives float32 numpy embeddings (N, D)."""

    def __init__(self, adapter: Any, encoder: nn.Module, config: Optional[Dict[str, Any]] = None) -> None:
        self.adapter = adapter
        self.encoder = encoder
        self.config: Dict[str, Any] = dict(config or {})
        self.config.setdefault("adapter", adapter.name)
        self.config.setdefault("embed_dim", int(getattr(encoder, "embed_dim", 0)) or None)

    # ------------------------------------------------------------------ use
    @property
    def embed_dim(self) -> int:
        return int(self.config.get("embed_dim") or self.adapter.embed_dim(self.encoder))

    @property
    def device(self) -> torch.device:
        try:
            return next(self.encoder.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def to(self, device: Union[str, torch.device]) -> "SSLModel":
        self.encoder.to(device)
        return self

    def prepare(self, data: Any) -> Any:
        """The adapter's decode + validate step, with this model's preprocessing state."""
        return self.adapter.prepare(data)

    @torch.no_grad()
    def embed(self, data: Any, batch_size: int = 256, device: Optional[Union[str, torch.device]] = None) -> np.ndarray:
        """Embeddings (N, D) as float32 numpy, computed in eval mode (deterministic)."""
        if device is not None:
            self.encoder.to(device)
        return self.embed_prepared(self.adapter.prepare(data), batch_size=batch_size)

    @torch.no_grad()
    def embed_prepared(self, prepared: Any, batch_size: int = 256) -> np.ndarray:
        """:meth:`embed` for data already through :meth:`prepare`."""
        from multissl.trainer import embed_prepared

        z = embed_prepared(self.encoder, self.adapter, prepared, batch_size=batch_size, device=self.device)
        return z.numpy().astype(np.float32, copy=False)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: Union[str, os.PathLike], metrics: Optional[Dict[str, Any]] = None) -> Path:
        """Write weights, config and model card. The folder is assembled in a temporary sibling
        and renamed into place, so a crash never leaves a half-written model behind."""
        from safetensors.torch import save_file

        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        if metrics:
            self.config["metrics"] = {**self.config.get("metrics", {}), **metrics}
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "library": "multissl"})
            config = {**self.config, "format_version": FORMAT_VERSION, "adapter_config": self.adapter.get_config()}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=_json_default))
            from multissl.model_card import render_model_card

            (tmp / CARD_NAME).write_text(render_model_card(config))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def from_pretrained(cls, model_id: Union[str, os.PathLike], *, revision: Optional[str] = None,
                        encoder: Optional[nn.Module] = None, device: Optional[Union[str, torch.device]] = None,
                        cache_dir: Optional[str] = None, token: Optional[str] = None) -> "SSLModel":
        """Load from a local folder or a Hub repo id. Pass ``encoder=`` for a model trained with
        a custom encoder module (its architecture is not in config.json, only its weights)."""
        from safetensors.torch import load_file

        from multissl.adapters import get_adapter_class

        folder = Path(model_id)
        if not folder.is_dir():
            s = str(model_id)
            if folder.exists() or s.startswith((".", "/", "~")) or s.count("/") > 1:
                raise UserError(f"{model_id}: no such model folder")
            folder = _download(str(model_id), revision=revision, cache_dir=cache_dir, token=token)
        cfg_path = folder / CONFIG_NAME
        if not cfg_path.is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise UserError(f"{folder}: not a multissl model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{cfg_path}: invalid JSON ({e})") from None
        adapter = get_adapter_class(config["adapter"]).from_config(config.get("adapter_config", {}))
        spec = config.get("encoder") or {}
        if encoder is None:
            if not spec.get("name"):
                raise ConfigError(f"{folder}: trained with a custom encoder ({spec.get('class', '?')}); "
                                  "pass encoder=<an instance of that module> to from_pretrained")
            encoder = adapter.build_encoder(spec["name"], **spec.get("kwargs", {}))
        state = load_file(str(folder / WEIGHTS_NAME))
        try:
            encoder.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)]
            raise ConfigError(f"{folder}: weights do not match the encoder ({first[0].strip()})") from None
        encoder.eval()
        model = cls(adapter, encoder, {k: v for k, v in config.items() if k not in ("adapter_config", "format_version")})
        if device is not None:
            model.to(device)
        return model

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: Optional[str] = None,
                    commit_message: str = "Upload multissl model", revision: Optional[str] = None) -> str:
        """Save to a temporary folder and upload it with ``huggingface_hub`` (returns the commit URL).

        The real client does the work, so ``HF_ENDPOINT``, ``HF_TOKEN`` / ``huggingface-cli login``
        and proxies behave as everywhere else in the Hugging Face stack."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message,
                               revision=revision)

    def __repr__(self) -> str:
        return (f"SSLModel(adapter={self.config.get('adapter')!r}, method={self.config.get('method')!r}, "
                f"encoder={(self.config.get('encoder') or {}).get('name')!r}, embed_dim={self.config.get('embed_dim')})")


def push_folder(folder: Union[str, os.PathLike], repo_id: str, *, private: bool = False, token: Optional[str] = None,
                commit_message: str = "Upload multissl model", revision: Optional[str] = None) -> str:
    """Upload a saved model folder as it is (weights, config, card) to ``repo_id``; creates the
    repo if needed and returns the commit URL. ``multissl push`` uses this, so a folder written by
    a recipe keeps its card (and evaluation figures) byte for byte."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder}: not a multissl model folder (missing {', '.join(missing)})")
    from huggingface_hub.errors import HfHubHTTPError

    network_errors: tuple = (HfHubHTTPError, OSError)
    try:
        import httpx

        network_errors += (httpx.HTTPError,)
    except ImportError:  # older huggingface_hub (requests)
        pass
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                 revision=revision, repo_type="model",
                                 allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    except network_errors as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{repo_id}: upload to the Hugging Face Hub failed ({type(e).__name__}: {first})") from None
    return str(getattr(info, "commit_url", info))


def _download(repo_id: str, revision: Optional[str], cache_dir: Optional[str], token: Optional[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]))
    except LocalEntryNotFoundError:
        raise UserError(f"{repo_id}: not a local folder, and not in the Hugging Face cache while offline") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise UserError(f"{repo_id}: cannot download from the Hugging Face Hub ({type(e).__name__}: {e})") from None


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)
