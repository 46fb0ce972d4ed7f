"""Prefect tasks: thin, cached, retryable wrappers of `dmn` functions."""
