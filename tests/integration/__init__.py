"""Tests against a real gunicorn + gevent-websocket server over real transports."""
