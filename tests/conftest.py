"""Shared pytest fixtures. One local Ray per test session: ``ray.init`` costs seconds."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before Ray starts (in this process and in the workers it spawns).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
# Default models (mixscale.inference) come from a per-session folder, never from the user's ~/.mixscale.
os.environ["MIXSCALE_HOME"] = tempfile.mkdtemp(prefix="mixscale-home-")

RAY_TEST_CPUS = 4


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 4 logical CPUs, shared by every test that asks for it; yields ``ray``.

    Code under test sees ``ray.is_initialized()`` and uses this instance instead of
    starting its own.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        # The dashboard serves the State API, which Ray Train's placement-group cleaner needs to
        # free the CPUs of a run that Tune stopped early.
        ray.init(num_cpus=RAY_TEST_CPUS, include_dashboard=True, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()
