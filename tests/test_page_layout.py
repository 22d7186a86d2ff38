"""Server-rendered page pieces: flashes, the username rule on the register form, styled error pages."""

from flask import get_flashed_messages


def test_flashes_are_paragraphs_not_list_items_with_a_role(app, client):
    with client.session_transaction() as session:
        session["_flashes"] = [("success", "Welcome back")]
    page = client.get("/login").get_data(as_text=True)
    assert '<p class="flash flash-success" role="status">Welcome back</p>' in page
    assert '<li class="flash' not in page
    with app.test_request_context():
        assert get_flashed_messages() == []


def test_register_form_shows_the_username_rule_beside_the_field(client):
    page = client.get("/register").get_data(as_text=True)
    assert "3-32 characters: letters A-Z, digits, _ . -" in page
    assert 'aria-describedby="username-hint"' in page


def test_unknown_page_is_a_styled_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "<h1>Page not found</h1>" in page and "css/app.css" in page


def test_admin_page_for_a_non_admin_is_a_styled_403(make_user, login):
    response = login(make_user("ann")).get("/admin")
    assert response.status_code == 403
    assert "<h1>You cannot open this page</h1>" in response.get_data(as_text=True)


def test_api_errors_stay_json(client):
    response = client.get("/api/rooms/nope/messages")
    assert response.is_json and "error" in response.get_json()
