"""Flask-WTF forms for the account pages."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

USERNAME_RULE = Regexp(r"^[A-Za-z0-9_.\-]+$", message="Use only letters, digits, '_', '.' and '-'.")


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
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(),
            Length(min=8, max=128, message="Use 8 to 128 characters."),
        ],
    )
    confirm = PasswordField(
        "Confirm password",
        validators=[
            DataRequired(),
            EqualTo("password", message="The passwords do not match."),
        ],
    )
    submit = SubmitField("Create account")


class LogoutForm(FlaskForm):
    submit = SubmitField("Sign out")
