"""Reads that pages, the API and the worker share."""
