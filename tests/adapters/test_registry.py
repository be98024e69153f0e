"""Adapter registry: built-ins, run-time registration, and third-party entry points."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

import multissl.adapters as adapters
from multissl.adapters import Adapter, get_adapter, get_adapter_class, list_adapters, register_adapter
from multissl.errors import ConfigError


def test_builtin_image_adapter_is_listed_and_loads():
    assert "image" in list_adapters()
    assert get_adapter_class("image").name == "image"
    assert isinstance(get_adapter("image"), Adapter)


def test_unknown_adapter_names_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown adapter 'smell'.*image"):
        get_adapter("smell")


def test_register_rejects_non_adapters():
    with pytest.raises(TypeError):
        register_adapter("bad", dict)


def test_instances_pass_through():
    a = get_adapter("image")
    assert get_adapter(a) is a


def test_third_party_entry_point_is_discovered(tmp_path, monkeypatch):
    """A distribution that only declares an entry point in the ``multissl.adapters`` group
    (as `pip install some-plugin` would lay it out) is found by list_adapters/get_adapter."""
    pkg = tmp_path / "multissl_audio_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from multissl.adapters import Adapter

        class AudioAdapter(Adapter):
            name = "audio"
    '''))
    dist = tmp_path / "multissl_audio_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: multissl-audio-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[multissl.adapters]\naudio = multissl_audio_plugin:AudioAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert "audio" in list_adapters()
    assert get_adapter_class("audio").__name__ == "AudioAdapter"

    (dist / "entry_points.txt").write_text("[multissl.adapters]\nbroken = multissl_audio_plugin:Adapter2\n")
    (pkg / "__init__.py").write_text("Adapter2 = dict\n")
    sys.modules.pop("multissl_audio_plugin", None)
    with pytest.raises(ConfigError, match="does not name an Adapter subclass"):
        get_adapter_class("broken")


def test_lazy_class_import():
    assert adapters.ImageAdapter is get_adapter_class("image")
