"""Views for the chat page."""

from flask import render_template
from flask_login import current_user, login_required

from app.chat import bp


@bp.route("/")
@login_required
def index():
    return render_template("chat/index.html", user=current_user.to_dict())
