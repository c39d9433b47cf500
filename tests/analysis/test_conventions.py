"""Conventions analysis promises: frozen documented dataclasses and exports.

Its import boundary (storage and ncaio at module level, nca lazily) is in tests/test_imports.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import analysis

ANALYSIS_DIR = Path(analysis.__file__).resolve().parent


def _modules():
    return [importlib.import_module(f"analysis.{m.name}")
            for m in pkgutil.iter_modules([str(ANALYSIS_DIR)])]


def test_dataclasses_are_frozen_keyword_only_and_documented():
    seen = 0
    for module in _modules():
        source = Path(module.__file__).read_text()
        for obj in vars(module).values():
            if not (dataclasses.is_dataclass(obj) and isinstance(obj, type)
                    and obj.__module__ == module.__name__):
                continue
            seen += 1
            assert obj.__dataclass_params__.frozen, obj
            assert all(f.kw_only for f in dataclasses.fields(obj)), obj
            assert "__slots__" in vars(obj), obj
            for f in dataclasses.fields(obj):
                assert re.search(rf"\n    {f.name}: [^\n]+\n(    [^\n]*\n)?    \"\"\"", source), \
                    (obj, f.name)
    assert seen >= 8


def test_exports_resolve():
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None, name

