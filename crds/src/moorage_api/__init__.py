"""Moorage API: pydantic models of our custom resources, the single source of truth for the CRDs."""
