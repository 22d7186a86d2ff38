"""The rules of Switchboard as plain functions: they validate, write, commit and return data."""
