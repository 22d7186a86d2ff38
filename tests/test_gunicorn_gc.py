"""The worker's garbage collector settings from gunicorn.conf.py."""

import gc
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_gunicorn_conf(monkeypatch, thresholds: str | None):
    if thresholds is None:
        monkeypatch.delenv("GC_THRESHOLDS", raising=False)
    else:
        monkeypatch.setenv("GC_THRESHOLDS", thresholds)
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", ROOT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_thresholds_default_and_from_the_environment(monkeypatch):
    assert load_gunicorn_conf(monkeypatch, None).GC_THRESHOLDS == (10000, 10, 10)
    assert load_gunicorn_conf(monkeypatch, "5000,20,30").GC_THRESHOLDS == (5000, 20, 30)


def test_tuning_freezes_what_is_loaded_and_sets_the_thresholds(monkeypatch, restored_gc):
    conf = load_gunicorn_conf(monkeypatch, "12345,7,9")
    gc.unfreeze()
    loaded = object.__new__(type("Loaded", (), {}))
    conf.tune_garbage_collector()
    assert gc.get_threshold() == (12345, 7, 9)
    assert gc.get_freeze_count() > 0
    assert not any(obj is loaded for obj in gc.get_objects())  # frozen objects are out of every generation


def test_the_worker_hook_tunes_the_collector(monkeypatch, restored_gc):
    import gevent

    conf = load_gunicorn_conf(monkeypatch, "4321,5,6")
    spawned = []
    monkeypatch.setattr(gevent, "spawn", lambda *args: spawned.append(args))
    conf.post_worker_init(type("Worker", (), {"wsgi": None})())
    assert gc.get_threshold() == (4321, 5, 6)
    assert spawned  # the graceful-stop watcher is still started
