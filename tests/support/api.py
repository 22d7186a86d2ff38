"""Small helpers for talking to a live server's JSON API."""

import uuid

import requests


def new_username(prefix: str = "user") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def register_and_token(base_url: str, username: str | None = None, password: str = "correct horse") -> dict:
    """Register a user (if new) and return the /api/token answer: token, expires_at, user."""
    username = username or new_username()
    response = requests.post(f"{base_url}/api/register", json={"username": username, "password": password}, timeout=10)
    if response.status_code not in (201, 409):
        raise AssertionError(f"register failed: {response.status_code} {response.text}")
    response = requests.post(f"{base_url}/api/token", json={"username": username, "password": password}, timeout=10)
    response.raise_for_status()
    return response.json()
