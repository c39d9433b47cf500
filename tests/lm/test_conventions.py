"""Conventions the package promises: frozen configs and explicit randomness.

That lm never imports nca is one of the import rules in tests/test_imports.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import lm

LM_DIR = Path(lm.__file__).resolve().parent


def _modules():
    return [importlib.import_module(f"lm.{m.name}") for m in pkgutil.iter_modules([str(LM_DIR)])]


def test_public_config_dataclasses_are_frozen_and_documented():
    for module in _modules():
        for obj in vars(module).values():
            if (dataclasses.is_dataclass(obj) and isinstance(obj, type)
                    and obj.__module__ == module.__name__ and not obj.__name__.startswith("_")):
                assert obj.__dataclass_params__.frozen, obj
                source = Path(module.__file__).read_text()
                for f in dataclasses.fields(obj):
                    assert re.search(rf"\n    {f.name}: [^\n]+\n    \"\"\"", source), (obj, f.name)


def test_no_global_seeding_outside_entry_points():
    for path in LM_DIR.glob("*.py"):
        text = path.read_text()
        if path.name != "bench.py":
            assert "torch.manual_seed" not in text, path


def test_exports_resolve():
    for name in lm.__all__:
        assert getattr(lm, name) is not None
