"""Views for the account pages."""

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from app.auth import CREDENTIAL_STAMP_KEY, bp
from app.auth.forms import LoginForm, LogoutForm, RegisterForm
from app.errors import ServiceError
from app.services import users
from app.services.signin_throttle import SignInThrottled, describe_wait

# The `kicked` reason a socket gets when its user signs out.
SIGNED_OUT_REASON = "signed out"


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("chat.index")


def sign_in(user) -> None:
    login_user(user)
    # The session ends when the password changes (see load_user).
    session[CREDENTIAL_STAMP_KEY] = users.credential_stamp(user, current_app.config["SECRET_KEY"])


@bp.app_context_processor
def inject_logout_form() -> dict:
    return {"logout_form": LogoutForm() if current_user.is_authenticated else None}


@bp.route("/register", methods=["GET", "POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("chat.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = users.sign_up(form.username.data, form.password.data)
        except ServiceError as error:
            if error.code == "conflict":
                form.username.errors.append("That username is taken.")
            elif error.message.startswith("password"):
                form.password.errors.append(error.message[0].upper() + error.message[1:] + ".")
            else:
                form.username.errors.append(error.message)
        else:
            sign_in(user)
            flash(f"Welcome, {user.username}!", "success")
            return redirect(url_for("chat.index"))
    return render_template("auth/register.html", form=form), 400 if request.method == "POST" else 200


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    headers = {}
    if form.validate_on_submit():
        throttle = current_app.extensions["switchboard.signin_throttle"]
        try:
            user = throttle.authenticate(form.username.data, form.password.data, request.remote_addr)
        except SignInThrottled as error:
            flash(f"Too many failed sign-ins. Please wait {describe_wait(error.retry_after)} and try again.", "error")
            status = error.http_status
            headers["Retry-After"] = str(error.retry_after)
        except ServiceError as error:
            flash(
                "Wrong username or password." if error.code == "unauthorized" else error.message,
                "error",
            )
            status = 401 if error.code == "unauthorized" else 403
        else:
            sign_in(user)
            return redirect(_safe_next(request.args.get("next")))
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status, headers


@bp.route("/logout", methods=["POST"])
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        if current_user.is_authenticated:
            # Signing out signs out every device: the copied cookie, the bearer tokens, the open sockets.
            users.end_sessions(current_user.id, SIGNED_OUT_REASON)
        logout_user()
        flash("You have signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    flash("Your form expired or was sent from elsewhere. Please try again.", "error")
    if request.path in ("/login", "/register"):
        return redirect(request.full_path if request.query_string else request.path)
    return redirect(url_for("auth.login"))
