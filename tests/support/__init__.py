"""Helpers shared by the tests: hand-made cities, owner fixtures, a real server, the KPI
reference, savepoints."""
