"""Tests of the Python client and the tools the delivery tests share."""
