"""Views for the admin dashboard."""

from flask import abort, render_template
from flask_login import current_user, login_required

from app.admin import bp


@bp.route("", strict_slashes=False)
@login_required
def dashboard():
    if not current_user.is_admin:
        abort(403)
    return render_template("admin/index.html", user=current_user.to_dict())
