"""The application factory."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from flask import Flask, flash, jsonify, redirect, render_template, request, url_for

from app.config import INSTANCE, ROOT, config_from_env
from app.errors import HTTP_STATUS, error_body
from app.extensions import csrf, db, login_manager, migrate, socketio


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    register_extensions(app)
    register_blueprints(app)
    register_namespaces(app)
    register_error_handlers(app)
    register_cli(app)
    return app


def register_extensions(app: Flask) -> None:
    from app.database import configure_engine
    from app.models import User
    from app.packet_limits import limit_packet_sizes

    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
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
        return user if user is not None and not user.banned else None

    socketio_options = {
        "async_mode": app.config["SOCKETIO_ASYNC_MODE"],
        "cors_allowed_origins": origin_checker(app.config["CHAT_ALLOWED_ORIGINS"]),
        "max_http_buffer_size": app.config["MAX_PACKET_BYTES"],
        "logger": app.config["SOCKETIO_LOGGER"],
        "engineio_logger": False,
    }
    if app.config["REDIS_URL"]:
        socketio_options["message_queue"] = app.config["REDIS_URL"]
        socketio_options["channel"] = f"{app.config['REDIS_PREFIX']}:socketio"
    socketio.init_app(app, **socketio_options)
    # Outside Flask-SocketIO's middleware, so packets are bounded before Engine.IO reads them.
    app.wsgi_app = limit_packet_sizes(app.wsgi_app, socketio.server.eio, app.config["MAX_PACKET_BYTES"])


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
        host = (environ.get("HTTP_HOST") or "").lower()
        parts = urlsplit(origin)
        scheme = environ.get("HTTP_X_FORWARDED_PROTO", environ.get("wsgi.url_scheme", "http")).lower()
        forwarded_host = (environ.get("HTTP_X_FORWARDED_HOST") or "").lower()
        return parts.scheme == scheme and parts.netloc in {host, forwarded_host} - {""}

    return is_allowed


def register_blueprints(app: Flask) -> None:
    from app.admin import bp as admin_bp
    from app.api import bp as api_bp
    from app.auth import bp as auth_bp
    from app.chat import bp as chat_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(chat_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)


def register_namespaces(app: Flask) -> None:
    from app.sockets import init_namespaces

    init_namespaces(app, socketio)


def register_error_handlers(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException

    from app.errors import ServiceError

    code_for_status = {status: code for code, status in HTTP_STATUS.items() if code not in ("muted", "banned")}

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path == "/healthz"

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        return jsonify(error_body(error.code, error.message)), error.http_status

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
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        if wants_json():
            return jsonify(error_body("internal", "internal server error")), 500
        return error_page(500)


def register_cli(app: Flask) -> None:
    from app.auth.cli import users_cli

    app.cli.add_command(users_cli)
