"""Service tests share one throwaway PostgreSQL database per run.

The app fixture creates the tables before and drops them after every test, so
each test still starts empty; creating a database per test would cost most of
the run.
"""

import pytest

from tests.support import components


@pytest.fixture(scope="session")
def shared_postgres_url():
    url = components.create_postgres_database()
    yield url
    components.drop_postgres_database(url)


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("shared_postgres_url")
