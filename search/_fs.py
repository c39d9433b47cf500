"""Atomic file writes for the search service: the one implementation lives in ncaio."""

from __future__ import annotations

from ncaio import atomic_write_json as write_json_atomic

__all__ = ["write_json_atomic"]
