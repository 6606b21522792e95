from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import pytest

from mfstore.dataset import Dataset, load_dataset
from tests.cli_run import QUICK, in_home
from tests.services import S3, Postgres

SPREAD = {"tests/test_readme.py"}  # long, independent sessions: each may go to either worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With `--dist loadgroup`, the tests of one file run on one worker (they share its
    module fixtures), except the files in SPREAD, whose tests are spread over the workers."""
    for item in items:
        where = item.nodeid.split("::")[0]
        if where not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(where))


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("sklearn:digits")


@pytest.fixture(scope="session")
def breast_cancer() -> Dataset:
    return load_dataset("sklearn:breast_cancer")


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory):
    """A workspace holding digits and a trained 2x32 network `net@1` (do not change it: copy
    it with the `home` fixture)."""
    home = tmp_path_factory.mktemp("trained")
    for args in (["init"], ["data", "add", "digits", "sklearn:digits"],
                 ["train", "net", "--data", "digits", "--arch", "dense:32,dense:32",
                  "--baseline", "none", *QUICK]):
        out = in_home(home, *args)
        assert out.returncode == 0, out.stderr
    return home


@pytest.fixture
def home(trained_home, tmp_path):
    """A copy of `trained_home` of the test's own."""
    copy = tmp_path / "home"
    shutil.copytree(trained_home, copy)
    return copy


@pytest.fixture(scope="session")
def postgres():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's S3 server; the AWS settings a user would export point every process at it."""
    server = S3(tmp_path_factory.mktemp("s3"))
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@dataclass(frozen=True)
class Backend:
    """Where a test's registry and store live."""

    name: str
    registry: str
    store: str
    home: str

    def args(self) -> list[str]:
        return ["--home", self.home, "--registry", self.registry, "--store", self.store]

    def env(self) -> dict[str, str]:
        """The same places as a user's exported variables."""
        return {"MFSTORE_HOME": self.home, "MFSTORE_REGISTRY": self.registry,
                "MFSTORE_STORE": self.store}


@pytest.fixture(params=["sqlite+local", "postgres+s3"])
def backend(request, tmp_path) -> Backend:
    """Each test that takes it runs twice: SQLite and a local folder, then PostgreSQL and S3."""
    return make_backend(request.param, request, tmp_path)


def make_backend(kind: str, request, folder) -> Backend:
    if kind == "sqlite+local":
        return Backend(kind, f"sqlite:///{folder}/registry.db", str(folder / "store"),
                       str(folder))
    pg, s3 = request.getfixturevalue("postgres"), request.getfixturevalue("s3")
    return Backend(kind, pg.new_database(), f"s3://{s3.new_bucket()}/mf", str(folder))
