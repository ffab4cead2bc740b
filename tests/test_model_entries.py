"""fcos.model_entries: the config's models list as entries, bad items refused naming the key."""

from pathlib import Path

import pytest

from fcos.errors import ConfigError
from fcos.model_entries import REGISTRY_MODELS, model_entries
from fcos.models import model_names


def test_registry_names_match_the_registry():
    assert sorted(REGISTRY_MODELS) == model_names()


def test_user_entry_resolves_against_the_workflow_dir(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text("def build(width=4):\n    raise RuntimeError\n")
    entries = model_entries(["cnn1d", {"name": "my_cnn", "model_file": "models/net.py:build",
                                       "model_args": {"width": 8}}], tmp_path)
    assert [e.name for e in entries] == ["cnn1d", "my_cnn"] and entries[0].builder is None
    assert entries[1].builder.file == (tmp_path / "models" / "net.py").resolve()
    assert entries[1].builder.function == "build" and entries[1].builder.args == {"width": 8}


@pytest.mark.parametrize("models, key", [
    (["cnn1d", {"name": "cnn1d", "model_file": "net.py:build"}], "models[1].name"),
    ([{"name": "a", "model_file": "net.py:build"}, {"name": "a", "model_file": "net.py:build"}], "models[1].name"),
    (["cnn1d", "cnn1d"], "models[1]"),
    (["cnn1d", {"name": "b", "model_file": "gone.py:build"}], "models[1].model_file"),
    (["cnn1d", "x", {"name": "b", "model_file": "net.py:nothing"}], "models[1]"),
    (["cnn1d", {"name": "b", "model_file": "net.py:nothing"}], "models[1].model_file"),
    ([{"name": "Bad/Name", "model_file": "net.py:build"}], "models[0].name"),
    ([{"name": "b", "model_file": "net.py:build", "extra": 1}], "models[0].extra"),
])
def test_bad_items_name_the_key(tmp_path, models, key):
    (tmp_path / "net.py").write_text("def build():\n    pass\n")
    with pytest.raises(ConfigError) as err:
        model_entries(models, tmp_path)
    message = str(err.value)
    assert f"config key '{key}'" in message and "\n" not in message and "expected" in message


def test_chain_model_lists_restrict_registry_models_only(tmp_path):
    from fcos.model_entries import method_applies
    from fcos.prune.chains import method_chains

    (tmp_path / "net.py").write_text("def build():\n    pass\n")
    cnn1d, resnet56, user = model_entries(["cnn1d", "resnet56", {"name": "mine", "model_file": "net.py:build"}],
                                          tmp_path)
    slimming = method_chains()["slimming"]
    assert not method_applies(slimming, cnn1d) and method_applies(slimming, resnet56)
    assert method_applies(slimming, user), "a user's network is not skipped silently"
    assert all(method_applies(chain, e) for chain in method_chains().values() if "models" not in chain
               for e in (cnn1d, resnet56, user))
