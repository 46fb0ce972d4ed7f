"""Prefect flows of dmn-pipeline."""
