"""The application factory."""

from __future__ import annotations

import hmac
import json
from urllib.parse import quote, urlsplit

from flask import Flask, flash, jsonify, redirect, render_template, request, session, url_for
from werkzeug.exceptions import SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import get_host

from app.config import INSTANCE, ROOT, config_from_env
from app.errors import HTTP_STATUS, error_body
from app.extensions import csrf, db, login_manager, migrate, socketio
from app.logs import configure_logging, library_logger


def create_app(config: type | dict | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(INSTANCE),
    )
    app.config.from_object(config_from_env() if config is None or isinstance(config, dict) else config)
    if isinstance(config, dict):
        app.config.update(config)
    INSTANCE.mkdir(parents=True, exist_ok=True)
    configure_logging(app.config["LOG_FORMAT"])

    register_extensions(app)
    register_signin_throttle(app)
    register_blueprints(app)
    register_namespaces(app)
    register_error_handlers(app)
    register_response_headers(app)
    register_cli(app)
    register_observability(app)
    return app


def register_extensions(app: Flask) -> None:
    from app import socket_guard
    from app.auth import CREDENTIAL_STAMP_KEY
    from app.database import configure_engine
    from app.models import User, include_in_schema_comparison
    from app.packet_limits import check_internals, limit_packet_sizes
    from app.services import users
    from app.services.files import FilesystemStore
    from app.sockets.common import check_login_session_key
    from app.sockets.dispatch import check_dispatch_internals, dispatch_installable, install_event_dispatch
    from app.sockets.fanout import check_fanout_internals, fanout_installable, install_direct_writes
    from app.sockets.pings import check_ping_internals, install_timer_pings

    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True, include_name=include_in_schema_comparison)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to chat."

    @login_manager.unauthorized_handler
    def send_to_login():
        flash(login_manager.login_message, "info")
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("auth.login", next=None) + "?next=" + quote(target, safe="/?=&"))

    @login_manager.user_loader
    def load_user(user_id: str):
        user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
        if user is None or user.banned:
            return None
        # A session from before the password last changed is over.
        stamp = users.credential_stamp(user, app.config["SECRET_KEY"])
        return user if hmac.compare_digest(str(session.get(CREDENTIAL_STAMP_KEY)), stamp) else None

    app.extensions["switchboard.files"] = FilesystemStore(app.config["UPLOAD_DIR"])

    socketio_options = {
        "async_mode": app.config["SOCKETIO_ASYNC_MODE"],
        "cors_allowed_origins": origin_checker(app.config["CHAT_ALLOWED_ORIGINS"]),
        "max_http_buffer_size": app.config["MAX_PACKET_BYTES"],
        "logger": library_logger("socketio.server", app.config["SOCKETIO_LOGGER"]),
        "engineio_logger": library_logger("engineio.server", False),
        "ping_interval": app.config["SOCKET_PING_INTERVAL_SECONDS"],
        "ping_timeout": app.config["SOCKET_PING_TIMEOUT_SECONDS"],
    }
    # Both managers keep each socket's rooms indexed. (Imported here: importing the app package,
    # as the command-line client does, loads nothing of the socket layer.)
    from app.sockets.room_index import IndexedManager, check_room_index_internals

    check_room_index_internals()
    if app.config["REDIS_URL"]:
        from app.sockets.message_queue import CatchUpRedisManager
        from app.sockets.message_queue import check_internals as check_queue_internals

        check_queue_internals()
        socketio_options["client_manager"] = CatchUpRedisManager(
            app.config["REDIS_URL"], channel=f"{app.config['REDIS_PREFIX']}:socketio"
        )
    else:
        socketio_options["client_manager"] = IndexedManager()
    socketio.init_app(app, **socketio_options)
    guard = socket_guard.install(
        socketio.server,
        max_bad_packets=app.config["SOCKET_MAX_BAD_PACKETS"],
        max_attachment_bytes=app.config["MAX_PACKET_BYTES"],
        anonymous_per_address=app.config["ANONYMOUS_HANDSHAKES_PER_ADDRESS"],
        connect_timeout=app.config["SOCKET_CONNECT_TIMEOUT_SECONDS"],
    )
    # Outside Flask-SocketIO's middleware, so packets are bounded before Engine.IO reads them.
    app.wsgi_app = limit_packet_sizes(  # type: ignore[method-assign]
        app.wsgi_app, socketio.server.eio, app.config["MAX_PACKET_BYTES"], admits_handshake=guard.admits_handshake
    )
    # Both rely on library internals: an upgrade that changes them stops the start, not a limit.
    check_internals()
    if app.config["FANOUT_DIRECT_WRITES"]:
        check_fanout_internals()
        if fanout_installable(socketio.server):
            app.extensions["switchboard.fanout"] = install_direct_writes(socketio.server)
    check_dispatch_internals(app)
    if dispatch_installable(socketio.server):
        install_event_dispatch(socketio.server)
    check_ping_internals()
    if fanout_installable(socketio.server):
        install_timer_pings(socketio.server.eio)
    check_login_session_key(app)
    if app.config["TRUSTED_HOSTS"]:
        # Outside the socket layer too, so a foreign Host reaches neither a view nor Engine.IO.
        app.wsgi_app = trusted_hosts_only(  # type: ignore[method-assign]
            app.wsgi_app, app.config["TRUSTED_HOSTS"], app.config["SECURITY_HEADERS"]
        )
    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        # Outermost, so the origin check and every view see the client's scheme, host and address
        # as the trusted proxies report them; without proxies the headers are ignored.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )


def trusted_hosts_only(wsgi_app, trusted_hosts: list[str], security_headers: dict[str, str]):
    """Answer ``400 invalid`` to a request whose Host (as the trusted proxies report it) is not listed."""
    body = json.dumps(error_body("invalid", "unknown host")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *security_headers.items()]

    def middleware(environ, start_response):
        if "HTTP_HOST" in environ:
            # Host names are case-insensitive; the comparison (werkzeug's, Flask's) is not.
            environ["HTTP_HOST"] = environ["HTTP_HOST"].lower()
        try:
            get_host(environ, trusted_hosts)
        except SecurityError:
            start_response("400 Bad Request", headers)
            return [body]
        return wsgi_app(environ, start_response)

    return middleware


def register_signin_throttle(app: Flask) -> None:
    from app.services.signin_throttle import FailureLog, MemoryFailureLog, SignInThrottle

    failures: FailureLog
    window = app.config["SIGNIN_FAILURE_WINDOW_SECONDS"]
    if app.config["REDIS_URL"]:
        from app.services.redis_state import RedisFailureLog, redis_client

        failures = RedisFailureLog(redis_client(app.config["REDIS_URL"]), app.config["REDIS_PREFIX"], window)
    else:
        failures = MemoryFailureLog(window)
    app.extensions["switchboard.signin_throttle"] = SignInThrottle(
        failures,
        per_account=app.config["SIGNIN_FAILURES_PER_ACCOUNT"],
        per_address=app.config["SIGNIN_FAILURES_PER_ADDRESS"],
    )


def origin_checker(extra_origins: list[str]):
    """Same-origin sockets only, plus the configured extra origins.

    Requests without an Origin header (bots, scripts) are not browser requests
    and are let through; Engine.IO only asks when an Origin is present.
    """
    allowed_extra = {origin.lower() for origin in extra_origins}

    def is_allowed(origin: str | None, environ: dict) -> bool:
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if origin in allowed_extra:
            return True
        # X-Forwarded-Host/-Proto count only through ProxyFix (TRUSTED_PROXIES), which has
        # already written them here; a client cannot send them past a server that trusts none.
        host = (environ.get("HTTP_HOST") or "").lower()
        parts = urlsplit(origin)
        scheme = environ.get("wsgi.url_scheme", "http").lower()
        return bool(host) and parts.scheme == scheme and parts.netloc == host

    return is_allowed


def register_blueprints(app: Flask) -> None:
    from app.admin import bp as admin_bp
    from app.api import bp as api_bp
    from app.auth import bp as auth_bp
    from app.chat import bp as chat_bp
    from app.files import bp as files_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(chat_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(files_bp)
    csrf.exempt(api_bp)


def register_namespaces(app: Flask) -> None:
    from app.sockets import init_namespaces

    init_namespaces(app, socketio)


def register_error_handlers(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException

    from app.database import STORAGE_PROBLEMS, storage_problem
    from app.errors import ServiceError

    code_for_status = {status: code for code, status in HTTP_STATUS.items() if code not in ("muted", "banned")}

    def wants_json() -> bool:
        return request.path.startswith(("/api/", "/files/")) or request.path == "/healthz"

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        response = jsonify(error_body(error.code, error.message))
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response, error.http_status

    def error_page(status: int):
        """The styled page for 403, 404 and 500; plain text if even that cannot be drawn."""
        try:
            return render_template(f"errors/{status}.html"), status
        except Exception:
            app.logger.exception("could not render the %s page", status)
            db.session.rollback()
            return f"Error {status}", status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if not wants_json():
            if error.code in (403, 404, 500):
                return error_page(error.code)
            return error
        code = code_for_status.get(error.code or 500, "invalid" if (error.code or 500) < 500 else "internal")
        return jsonify(error_body(code, error.description or error.name)), error.code

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        db.session.rollback()
        problem = storage_problem(error)
        if problem is not None:
            app.logger.error("%s %s: %s", request.method, request.path, STORAGE_PROBLEMS[problem])
        else:
            app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify(error_body("internal", STORAGE_PROBLEMS.get(problem or "", "internal server error"))), 500
        return error_page(500)


def register_response_headers(app: Flask) -> None:
    """Headers every response carries, and redirects that never name the host the client sent."""

    @app.after_request
    def add_security_headers(response):
        for name, value in app.config["SECURITY_HEADERS"].items():
            response.headers.setdefault(name, value)
        location = response.headers.get("Location")
        if location:
            response.headers["Location"] = same_site_location(location)
        return response


def same_site_location(location: str) -> str:
    """An absolute redirect back to this site, made relative (the host in it came from the request)."""
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc:
        return location
    if parts.netloc.lower() != (request.host or "").lower():
        return location
    path = parts.path or "/"
    return path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def register_cli(app: Flask) -> None:
    from app.auth.cli import users_cli
    from app.files.cli import files_cli

    app.cli.add_command(users_cli)
    app.cli.add_command(files_cli)


def register_observability(app: Flask) -> None:
    from app.logs import init_request_log
    from app.metrics import init_metrics

    init_metrics(app)
    init_request_log(app)
