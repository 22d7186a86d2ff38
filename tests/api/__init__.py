"""JSON API tests through the Flask test client."""
