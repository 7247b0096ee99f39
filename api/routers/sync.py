"""Placeholder: owned by helper 4 (Discogs OAuth / sync routes). Replaced by their implementation."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
