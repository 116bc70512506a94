"""Fuzz targets, their runner and the soak test (see fuzz/README.md)."""
