"""WSGI entry point: patch gevent first, then build the application."""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402

app = create_app()
