import pytest

REPORTS: list[str] = []


@pytest.fixture
def report_paths():
    """Tests append the reports they wrote; the terminal summary says where they are."""
    return REPORTS


def pytest_terminal_summary(terminalreporter):
    if REPORTS:
        terminalreporter.section("verisim reports")
        for path in REPORTS:
            terminalreporter.write_line(f"run report: {path}")
