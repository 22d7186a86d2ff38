"""Flask-WTF forms for the account pages."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Regexp

USERNAME_RULE = Regexp(r"^[A-Za-z0-9_.\-]+$", message="Use only letters A-Z (no accents), digits, '_', '.' and '-'.")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Sign in")


class RegisterForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[
            DataRequired(),
            Length(min=3, max=32, message="Use 3 to 32 characters."),
            USERNAME_RULE,
        ],
    )
    # InputRequired, not DataRequired: a password of spaces gets the sign-up rule's own reason.
    password = PasswordField(
        "Password",
        validators=[
            InputRequired(),
            Length(min=8, max=128, message="Use 8 to 128 characters."),
        ],
    )
    confirm = PasswordField(
        "Confirm password",
        validators=[
            InputRequired(),
            EqualTo("password", message="The passwords do not match."),
        ],
    )
    submit = SubmitField("Create account")


class LogoutForm(FlaskForm):
    submit = SubmitField("Sign out")
