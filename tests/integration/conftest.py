"""Starts the selected Molecule scenarios as soon as the session is collected.

The unit and static tests come first in the test command and take minutes of mostly one core;
the scenarios are mostly waiting (hosts booting, apt, images moving). Started here, the two run
side by side instead of one after the other. test_molecule.scenario_runs hands the futures to
the scenario tests and shuts the pool down at the end of the session.
"""

import test_molecule


def pytest_collection_finish(session):
    # A collection error interrupts the session right after this hook: start nothing then.
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        return
    names = test_molecule.selected_scenarios(session.items)
    if names and not session.config.option.collectonly:
        session.config._inferops_scenarios = test_molecule.start_scenarios(names)


def pytest_sessionfinish(session):
    # An interrupted session never reaches the fixture's teardown: drop the scenarios not started.
    started = getattr(session.config, "_inferops_scenarios", None)
    if started:
        for future in started[1].values():
            future.cancel()
