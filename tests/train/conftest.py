"""Shared training runs: the straight tiny CTD run (tests.train.ctd_cli.STEPS, one process, 8 devices) is the
reference of test_ctd_run and test_multihost, so it runs once per session. Tests read it; to continue or alter it
they copy it first."""

import pytest

from tests.train.ctd_cli import train


@pytest.fixture(scope="session")
def ctd_straight_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ctd_straight")
    train(work)
    return work
