"""The one error type the services raise, and its mapping to acks and HTTP statuses."""

HTTP_STATUS = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "muted": 403,
    "banned": 403,
    "internal": 500,
}


class ServiceError(Exception):
    """A refusal with a contract error code and a message a person can read."""

    def __init__(self, code: str, message: str):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
